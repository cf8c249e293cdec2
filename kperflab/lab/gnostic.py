"""OpenAPI v2 as kube-apiserver sends it to `Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`:
gnostic's `openapi.v2.Document` message (github.com/google/gnostic-models `openapiv2/OpenAPIv2.proto`), encoded
here by a small proto3 wire writer from the JSON document (no protobuf package).

kube-openapi makes it with gnostic's compiler (`openapi_v2.ParseDocument(json)` then `proto.Marshal`), and the
mapping below follows that compiler: objects become the proto's messages field by field; maps become repeated
`Named*` pairs in document order; `x-…` keys become `vendor_extension` `NamedAny`s whose `Any.yaml` is the value
written as YAML (as the compiler's `Marshal` of the YAML node); the oneofs pick by shape (`$ref` → JsonReference,
`in: body` → BodyParameter, else the sub-schema of `in`). kubectl reads it for `kubectl apply` of a `kind: List`
(client-side validation of each item, `kubectl/pkg/validation`), for `explain --output plaintext-openapiv2`, and
wherever the v3 document lacks what it needs.

    >>> encode_document({"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.37.0"}})[:6]
    b'\\n\\x032.0\\x12'
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import yaml

Enc = Callable[[Any], bytes]


# -- wire format ------------------------------------------------------------------------------------------

def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64 as two's complement, ten bytes
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(num: int, wire: int) -> bytes:
    return _varint(num << 3 | wire)


def _len(num: int, data: bytes) -> bytes:
    return _key(num, 2) + _varint(len(data)) + data


def _string(num: int, v: Any) -> bytes:
    return _len(num, str(v).encode()) if v not in (None, "") else b""


def _bool(num: int, v: Any) -> bytes:
    return _key(num, 0) + b"\x01" if v is True else b""


def _int64(num: int, v: Any) -> bytes:
    return _key(num, 0) + _varint(int(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) and v else b""


def _double(num: int, v: Any) -> bytes:
    return _key(num, 1) + struct.pack("<d", float(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) and v else b""


def _strings(num: int, v: Any) -> bytes:
    return b"".join(_len(num, str(s).encode()) for s in v) if isinstance(v, list) else b""


def _msg(num: int, enc: Enc, v: Any) -> bytes:
    return _len(num, enc(v)) if v is not None else b""


def _msgs(num: int, enc: Enc, v: Any) -> bytes:
    return b"".join(_len(num, enc(x)) for x in v) if isinstance(v, list) else b""


def _named(num: int, enc: Enc, mapping: Any) -> bytes:
    """A JSON object as repeated Named* {1 name, 2 value}."""
    if not isinstance(mapping, dict):
        return b""
    return b"".join(_len(num, _string(1, k) + _msg(2, enc, v)) for k, v in mapping.items())


def _any(v: Any) -> bytes:
    """gnostic's Any: field 2 `yaml`, the value as YAML text."""
    return _string(2, yaml.safe_dump(v, default_flow_style=False, sort_keys=False, allow_unicode=True, width=1 << 20))


def _vendor(num: int, obj: dict[str, Any]) -> bytes:
    return b"".join(_len(num, _string(1, k) + _msg(2, _any, v)) for k, v in obj.items() if k.startswith("x-"))


# -- messages (field numbers from OpenAPIv2.proto) ----------------------------------------------------

def _schema(s: Any) -> bytes:
    if not isinstance(s, dict):
        return b""
    out = [_string(1, s.get("$ref")), _string(2, s.get("format")), _string(3, s.get("title")),
           _string(4, s.get("description"))]
    if "default" in s:
        out.append(_msg(5, _any, s["default"]))
    out += [_double(6, s.get("multipleOf")), _double(7, s.get("maximum")), _bool(8, s.get("exclusiveMaximum")),
            _double(9, s.get("minimum")), _bool(10, s.get("exclusiveMinimum")), _int64(11, s.get("maxLength")),
            _int64(12, s.get("minLength")), _string(13, s.get("pattern")), _int64(14, s.get("maxItems")),
            _int64(15, s.get("minItems")), _bool(16, s.get("uniqueItems")), _int64(17, s.get("maxProperties")),
            _int64(18, s.get("minProperties")), _strings(19, s.get("required"))]
    out.append(_msgs(20, _any, s.get("enum")))
    extra = s.get("additionalProperties")
    if isinstance(extra, bool):
        out.append(_len(21, _key(2, 0) + (b"\x01" if extra else b"\x00")))
    elif isinstance(extra, dict):
        out.append(_len(21, _msg(1, _schema, extra)))
    if "type" in s:
        out.append(_len(22, _strings(1, s["type"] if isinstance(s["type"], list) else [s["type"]])))
    items = s.get("items")
    if items is not None:
        out.append(_len(23, _msgs(1, _schema, items if isinstance(items, list) else [items])))
    out.append(_msgs(24, _schema, s.get("allOf")))
    if "properties" in s:
        out.append(_len(25, _named(1, _schema, s["properties"])))
    out += [_string(26, s.get("discriminator")), _bool(27, s.get("readOnly"))]
    if "example" in s:
        out.append(_msg(30, _any, s["example"]))
    out.append(_vendor(31, s))
    return b"".join(out)


def _primitives(p: Any) -> bytes:  # PrimitivesItems
    if not isinstance(p, dict):
        return b""
    return b"".join([_string(1, p.get("type")), _string(2, p.get("format")), _msg(3, _primitives, p.get("items")),
                     _string(4, p.get("collectionFormat")), _msg(5, _any, p["default"]) if "default" in p else b"",
                     _bool(15, p.get("uniqueItems")), _msgs(16, _any, p.get("enum")), _vendor(18, p)])


def _non_body(p: dict[str, Any]) -> bytes:
    """Header/FormData/Query/Path sub-schemas: header and path lack allow_empty_value, so their later numbers are
    one lower."""
    where = p.get("in")
    sub = {"header": 1, "formData": 2, "query": 3, "path": 4}.get(str(where), 3)
    shift = 0 if sub in (2, 3) else -1
    fields = [_bool(1, p.get("required")), _string(2, where), _string(3, p.get("description")),
              _string(4, p.get("name"))]
    if shift == 0:
        fields.append(_bool(5, p.get("allowEmptyValue")))
    fields += [_string(6 + shift, p.get("type")), _string(7 + shift, p.get("format")),
               _msg(8 + shift, _primitives, p.get("items")), _string(9 + shift, p.get("collectionFormat"))]
    if "default" in p:
        fields.append(_msg(10 + shift, _any, p["default"]))
    fields += [_bool(20 + shift, p.get("uniqueItems")), _msgs(21 + shift, _any, p.get("enum")), _vendor(23 + shift, p)]
    return _len(sub, b"".join(fields))


def _parameter(p: Any) -> bytes:
    if not isinstance(p, dict):
        return b""
    if p.get("in") == "body":
        body = b"".join([_string(1, p.get("description")), _string(2, p.get("name")), _string(3, p.get("in")),
                         _bool(4, p.get("required")), _msg(5, _schema, p.get("schema")), _vendor(6, p)])
        return _len(1, body)
    return _len(2, _non_body(p))


def _parameters_item(p: Any) -> bytes:
    if isinstance(p, dict) and "$ref" in p:
        return _len(2, _string(1, p["$ref"]) + _string(2, p.get("description")))
    return _len(1, _parameter(p))


def _response(r: Any) -> bytes:
    r = r if isinstance(r, dict) else {}
    schema = _len(2, _msg(1, _schema, r["schema"])) if "schema" in r else b""  # SchemaItem{1 schema}
    return _string(1, r.get("description")) + schema + _vendor(5, r)


def _response_value(r: Any) -> bytes:
    if isinstance(r, dict) and "$ref" in r:
        return _len(2, _string(1, r["$ref"]))
    return _len(1, _response(r))


def _responses(rs: Any) -> bytes:
    rs = rs if isinstance(rs, dict) else {}
    codes = {k: v for k, v in rs.items() if not k.startswith("x-")}
    return _named(1, _response_value, codes) + _vendor(2, rs)


def _operation(op: Any) -> bytes:
    op = op if isinstance(op, dict) else {}
    return b"".join([_strings(1, op.get("tags")), _string(2, op.get("summary")), _string(3, op.get("description")),
                     _string(5, op.get("operationId")), _strings(6, op.get("produces")), _strings(7, op.get("consumes")),
                     _msgs(8, _parameters_item, op.get("parameters")), _msg(9, _responses, op.get("responses")),
                     _strings(10, op.get("schemes")), _bool(11, op.get("deprecated")),
                     _msgs(12, _security_requirement, op.get("security")), _vendor(13, op)])


def _path_item(item: Any) -> bytes:
    item = item if isinstance(item, dict) else {}
    out = [_string(1, item.get("$ref"))]
    for num, method in enumerate(("get", "put", "post", "delete", "options", "head", "patch"), start=2):
        out.append(_msg(num, _operation, item.get(method)))
    out += [_msgs(9, _parameters_item, item.get("parameters")), _vendor(10, item)]
    return b"".join(out)


def _paths(paths: Any) -> bytes:
    paths = paths if isinstance(paths, dict) else {}
    return _vendor(1, paths) + _named(2, _path_item, {k: v for k, v in paths.items() if not k.startswith("x-")})


def _security_requirement(req: Any) -> bytes:
    return _named(1, lambda v: _strings(1, v), req)


def _security_definition(d: Any) -> bytes:
    d = d if isinstance(d, dict) else {}
    if d.get("type") == "basic":
        return _len(1, _string(1, d.get("type")) + _string(2, d.get("description")) + _vendor(3, d))
    if d.get("type") == "apiKey":
        return _len(2, b"".join([_string(1, d.get("type")), _string(2, d.get("name")), _string(3, d.get("in")),
                                 _string(4, d.get("description")), _vendor(5, d)]))
    return b""  # OAuth2 flows: kube-apiserver declares none


def _info(info: Any) -> bytes:
    info = info if isinstance(info, dict) else {}
    return b"".join([_string(1, info.get("title")), _string(2, info.get("version")), _string(3, info.get("description")),
                     _string(4, info.get("termsOfService")), _vendor(7, info)])


def encode_document(doc: dict[str, Any]) -> bytes:
    """The gnostic `openapi.v2.Document` bytes of a Swagger 2.0 document."""
    out = [_string(1, doc.get("swagger")), _msg(2, _info, doc.get("info")), _string(3, doc.get("host")),
           _string(4, doc.get("basePath")), _strings(5, doc.get("schemes")), _strings(6, doc.get("consumes")),
           _strings(7, doc.get("produces"))]
    if "paths" in doc:
        out.append(_len(8, _paths(doc["paths"])))
    if "definitions" in doc:
        out.append(_len(9, _named(1, _schema, doc["definitions"])))
    if "parameters" in doc:
        out.append(_len(10, _named(1, _parameter, doc["parameters"])))
    if "responses" in doc:
        out.append(_len(11, _named(1, _response, doc["responses"])))
    out.append(_msgs(12, _security_requirement, doc.get("security")))
    if "securityDefinitions" in doc:
        out.append(_len(13, _named(1, _security_definition, doc["securityDefinitions"])))
    out.append(_vendor(16, doc))
    return b"".join(out)

