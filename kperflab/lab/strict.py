"""Field validation (`?fieldValidation=Strict|Warn|Ignore`) driven by upstream's schemas (`openapi`), for every kind.

kube-apiserver decodes a body with a strict decoder unless told `Ignore` (no parameter means `Warn`): each field the
kind's Go type does not have is `unknown field "spec.containers[0].imagePullPolcy"`, each key given twice in a JSON
object is `duplicate field "metadata.name"`, and a YAML body's repeated keys are one error
`yaml: unmarshal errors:\\n  line 7: key "name" already set in map` (sigs.k8s.io/json and sigs.k8s.io/yaml's
wording, in document order, YAML's first). `Strict` makes them a 400 (`<Kind> in version "v1" cannot be handled as a
<Kind>: strict decoding error: …`); `Warn` turns each into a `Warning: 299 - "…"` header (YAML's lines one by one).
Here the Go type is its OpenAPI definition: `properties` are the fields, `additionalProperties` a map, a definition
with neither (RawExtension, FieldsV1) or with `x-kubernetes-preserve-unknown-fields` takes anything. Protobuf bodies
have no strict checks upstream either.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

import yaml

from . import openapi

DIRECTIVES = ("Ignore", "Warn", "Strict")
MAX_WARNING_RUNES = 4 * 1024  # the API server's warning recorder: total, then each truncated to 256
MAX_WARNING_ITEM = 256


class _Pairs(list):  # type: ignore[type-arg]
    """A JSON object as its (key, value) pairs in document order, duplicates kept."""


def directive(query_value: str) -> str:
    """The field validation in effect: kube-apiserver's default for no parameter is Warn."""
    return query_value or "Warn"


def _resolve(defs: dict[str, Any], schema: Any) -> dict[str, Any] | None:
    for _ in range(64):
        if not isinstance(schema, dict):
            return None
        ref = schema.get("$ref")
        if ref is None and isinstance(schema.get("allOf"), list) and len(schema["allOf"]) == 1:
            ref = schema["allOf"][0].get("$ref") if isinstance(schema["allOf"][0], dict) else None
        if not isinstance(ref, str):
            return schema
        schema = defs.get(ref.rsplit("/", 1)[-1])
    return None


def _walk(defs: dict[str, Any], schema: Any, node: Any, path: str, out: list[str]) -> None:
    """Depth first in document order, as the decoder meets the fields; a string on the stack is an error met there."""
    stack: list[Any] = [(schema, node, path)]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        schema, node, path = item
        s = _resolve(defs, schema)
        if s is None or s.get("x-kubernetes-preserve-unknown-fields"):
            continue
        if isinstance(node, (_Pairs, dict)):
            props, extra = s.get("properties"), s.get("additionalProperties")
            if props is None and not isinstance(extra, dict):
                continue  # free-form
            pairs = list(node) if isinstance(node, _Pairs) else list(node.items())
            seen: set[str] = set()
            todo: list[Any] = []
            for key, value in pairs:
                p = f"{path}.{key}" if path else str(key)
                if props is not None and key not in props:
                    todo.append(f'unknown field "{p}"')
                    continue
                if key in seen:
                    todo.append(f'duplicate field "{p}"')
                seen.add(key)
                todo.append((props[key] if props is not None else extra, value, p))
            stack.extend(reversed(todo))
        elif isinstance(node, list) and isinstance(s.get("items"), dict):
            stack.extend(reversed([(s["items"], v, f"{path}[{i}]") for i, v in enumerate(node)]))


def object_errors(group: str, version: str, kind: str, obj: Any) -> list[str]:
    """Unknown (and, for a `_Pairs` tree, duplicate) fields of ``obj`` against the kind's definition; [] for a kind
    without one."""
    name = openapi.definition_for(group, version, kind)
    if name is None:
        return []
    defs = openapi.upstream()["definitions"]
    out: list[str] = []
    _walk(defs, {"$ref": f"#/definitions/{name}"}, obj, "", out)
    return out


def drop_unknown(group: str, version: str, kind: str, obj: Any) -> None:
    """Remove in place what the kind's Go type would not keep: decoding into it drops unknown fields whatever the
    validation said (`Ignore` and `Warn` store the object without them)."""
    name = openapi.definition_for(group, version, kind)
    if name is None:
        return
    defs = openapi.upstream()["definitions"]
    stack: list[tuple[Any, Any]] = [({"$ref": f"#/definitions/{name}"}, obj)]
    while stack:
        schema, node = stack.pop()
        s = _resolve(defs, schema)
        if s is None or s.get("x-kubernetes-preserve-unknown-fields"):
            continue
        if isinstance(node, dict):
            props, extra = s.get("properties"), s.get("additionalProperties")
            if props is None and not isinstance(extra, dict):
                continue
            for key in list(node):
                if props is not None and key not in props:
                    del node[key]
                else:
                    stack.append((props[key] if props is not None else extra, node[key]))
        elif isinstance(node, list) and isinstance(s.get("items"), dict):
            stack.extend((s["items"], v) for v in node)


def _yaml_duplicates(body: bytes) -> list[str]:
    """yaml.v2's UnmarshalStrict lines for keys set twice in one mapping (1-based lines of the repeated key)."""
    try:
        root = yaml.compose(body, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return []
    lines: list[str] = []
    stack = [root] if root is not None else []
    seen_nodes: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes:  # aliases point at nodes already walked
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: set[str] = set()
            kids = []
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode):
                    if k.value in keys:
                        lines.append(f'line {k.start_mark.line + 1}: key "{k.value}" already set in map')
                    keys.add(k.value)
                kids.append(v)
            stack.extend(reversed(kids))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed(node.value))
    lines.sort(key=lambda s: int(s.split(":")[0][5:]))
    return lines


def decode_errors(body: bytes, media: str, group: str, version: str, kind: str, obj: Any) -> list[str]:
    """The strict decoding errors of a request body, in kube-apiserver's order and words."""
    errs: list[str] = []
    tree: Any = obj
    if media == "application/json":
        try:
            tree = json.loads(body, object_pairs_hook=_Pairs)
        except (ValueError, RecursionError):
            tree = obj
    elif media == "application/yaml":
        dups = _yaml_duplicates(body)
        if dups:
            errs.append("yaml: unmarshal errors:\n  " + "\n  ".join(dups))
    else:
        return []
    return errs + object_errors(group, version, kind, tree)


def strict_message(kind: str, version: str, errs: list[str]) -> str:
    """transformDecodeError's wording around runtime's strictDecodingError."""
    return f'{kind} in version "{version}" cannot be handled as a {kind}: strict decoding error: {", ".join(errs)}'


def warnings_of(errs: list[str]) -> list[str]:
    """addStrictDecodingWarnings: one warning per error, a YAML error split into its lines."""
    out: list[str] = []
    for e in errs:
        for prefix in ("yaml: unmarshal errors:\n", "error converting YAML to JSON: yaml: unmarshal errors:\n"):
            if e.startswith(prefix):
                out += [line.strip() for line in e[len(prefix):].split("\n")]
                break
        else:
            out.append(e)
    return out


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def warning_header(texts: list[str]) -> str:
    r"""The `Warning` header value for ``texts`` as kube-apiserver's recorder writes them (code 299, agent "-",
    duplicates once, control characters refused, 4096 runes in all or each cut to 256), as one comma-separated
    value (HTTP's list form of the repeated header).

    >>> warning_header(['unknown field "spec.foo"', 'unknown field "spec.foo"'])
    '299 - "unknown field \\"spec.foo\\""'
    """
    uniq = [t for t in dict.fromkeys(texts)
            if t and not any(unicodedata.category(c) == "Cc" for c in t)]
    if sum(len(t) for t in uniq) > MAX_WARNING_RUNES:
        kept, written = [], 0
        for t in uniq:
            if written >= MAX_WARNING_RUNES:
                break
            t = t[:MAX_WARNING_ITEM]
            kept.append(t)
            written += len(t)
        uniq = kept
    return ", ".join(f"299 - {_quoted(t)}" for t in uniq)


# -- PATCH -------------------------------------------------------------------------------------------------

def go_format(v: Any) -> str:
    """Go's `%+v` of a decoded JSON value (patch.go prints the patch map so).

    >>> go_format({"spec": {"replicas": 2, "paused": True, "x": [1.5, None]}})
    'map[spec:map[paused:true replicas:2 x:[1.5 <nil>]]]'
    """
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{go_format(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, list):
        return "[" + " ".join(go_format(x) for x in v) + "]"
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        text = repr(v)
        return text[:-2] if text.endswith(".0") else text
    return str(v)


def _touched(obj: Any, body: Any) -> Any:
    """``obj`` cut to the keys ``body`` has, recursively through maps (lists and scalars whole), in ``obj``'s order."""
    if isinstance(obj, dict) and isinstance(body, dict):
        return {k: _touched(v, body[k]) for k, v in obj.items() if k in body}
    return obj


def check_patched(validation: str, media: str, group: str, version: str, kind: str, patch_body: Any,
                  patched: Any, warnings: list[str]) -> None:
    """Field validation of the object a merge, strategic-merge or JSON patch produced (patch.go's
    applyPatchToCurrentObject / strategicPatchObject): `Warn` adds warnings, `Strict` is their 422 on the field
    `patch` (the patch map for a strategic merge patch, else the patched object's JSON); unless it raised, the
    unknown fields are dropped from ``patched``, as decoding into the kind's type drops them."""
    # The stored object holds no unknown field (every write dropped them), so only what the patch touched can: for a
    # merge or strategic-merge patch the walk covers the patched object's part under the patch's keys (whole lists,
    # so paths and indexes are the full object's) instead of the whole object; a JSON patch's ops can reach anywhere.
    scope = _touched(patched, patch_body) if media != "application/json-patch+json" and isinstance(patch_body, dict) \
        else patched
    errs = object_errors(group, version, kind, scope)
    if not errs:
        return
    if validation in ("Ignore", "Warn"):
        if validation == "Warn":
            warnings += warnings_of(errs)
        drop_unknown(group, version, kind, patched)
        return
    from . import errors

    shown = go_format(patch_body) if media == "application/strategic-merge-patch+json" else json.dumps(
        patched, separators=(",", ":"), ensure_ascii=False)
    detail = "strict decoding error: " + ", ".join(errs)
    raise errors.invalid("", "", [{"reason": "FieldValueInvalid", "field": "patch",
                                   "message": f"Invalid value: {json.dumps(shown, ensure_ascii=False)}: {detail}"}])
