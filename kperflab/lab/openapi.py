"""The lab's OpenAPI: `/openapi/v2` and `/openapi/v3` as kube-apiserver serves them, for the kinds the lab serves.

Source: kube-apiserver's own OpenAPI v2 document (kubernetes/kubernetes `api/openapi-spec/swagger.json`) as the
official Python client keeps it, `kubernetes/swagger.json.unprocessed` of kubernetes-client/python at commit
ac0ee5091f0b (Kubernetes release-1.36, the spec the 36.x clients were generated from), reduced by
`scripts/openapi_reduce.py` to the lab's group/versions and committed as `openapi-spec.json.gz` (the source is
recorded inside it as `x-kperflab-source`). Definition names (`io.k8s.api.core.v1.Pod`), descriptions, `required`
and the `x-kubernetes-*` extensions (group-version-kind, patch strategy and merge key, list type and map keys) are
upstream's; the lab only leaves out what it does not serve:

- paths: kept for each row of `resources.TYPES` with the verbs and subresources the row has (`/api/v1/pods`,
  `…/namespaces/{namespace}/pods/{name}/status`, …); the rest of a group/version is dropped, and so are definitions
  no kept path reaches.
- v3 documents are made from the same paths and definitions the way kube-openapi's builder3 writes them: one per
  group/version, `#/components/schemas/…`, a `$ref` with siblings wrapped in `allOf`, body parameters as
  `requestBody` per media type (PATCH lists json-patch, merge-patch, strategic-merge-patch and apply-patch+yaml),
  responses per produced media type, parameters with a `schema`. What they lack: the `default` values builder3 adds
  from Go's zero values (v2 does not carry them; `kubectl explain` does not print them).

Served as kube-openapi's handlers do: JSON with a quoted ETag (uppercase hex SHA-512 of the bytes) and
`If-None-Match` → 304; `/openapi/v3` lists `serverRelativeURL`s with `?hash=<ETag>`, a stale hash is a 301 to the
current one, the current one is cached `public, immutable`. `/openapi/v2` also comes as gnostic's protobuf (`gnostic`),
which kubectl asks for to validate the items of a `kind: List` and where v3 lacks what it needs; v3's protobuf form is
not made (kubectl reads v3 as JSON), so an Accept that takes only that gets 406, as kube-openapi answers a format it
cannot give.

`schema_walk` gives strict field validation (`strict.py`) the definitions of a kind.
"""

from __future__ import annotations

import copy
import functools
import gzip
import hashlib
import json
import threading
import time
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Any

from .resources import TYPES, ResourceType

SPEC_FILE = Path(__file__).with_name("openapi-spec.json.gz")
V2_PROTOBUF = ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
               "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
V3_PROTOBUF = ("application/com.github.proto-openapi.spec.v3@v1.0+protobuf",
               "application/com.github.proto-openapi.spec.v3.v1.0+protobuf")
METHODS = ("get", "put", "post", "delete", "options", "head", "patch")
# x-kubernetes-action → the verb a resource row must have for the operation to be served
ACTION_VERB = {"get": "get", "list": "list", "post": "create", "put": "update", "patch": "patch", "delete": "delete",
               "deletecollection": "deletecollection"}


@functools.cache
def upstream() -> dict[str, Any]:
    """The committed, reduced upstream v2 document (read once)."""
    return json.loads(gzip.decompress(SPEC_FILE.read_bytes()))


def _gv_prefix(group: str, version: str) -> str:
    return f"/apis/{group}/{version}" if group else f"/api/{version}"


def _gv_key(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _served_paths(types: list[ResourceType]) -> dict[str, tuple[ResourceType, str]]:
    """Path template → (row, subresource) for everything the lab routes."""
    out: dict[str, tuple[ResourceType, str]] = {}
    for t in types:
        pre = _gv_prefix(t.group, t.version)
        base = f"{pre}/namespaces/{{namespace}}/{t.plural}" if t.namespaced else f"{pre}/{t.plural}"
        out[base] = (t, "")
        out[f"{base}/{{name}}"] = (t, "")
        if t.namespaced:
            out[f"{pre}/{t.plural}"] = (t, "")  # the list across namespaces
        for sub in t.subresources:
            out[f"{base}/{{name}}/{sub}"] = (t, sub)
            if sub == "proxy":
                out[f"{base}/{{name}}/proxy/{{path}}"] = (t, sub)
    return out


def _refs(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            out.add(ref)
        for v in node.values():
            _refs(v, out)
    elif isinstance(node, list):
        for v in node:
            _refs(v, out)


def _closure(doc: dict[str, Any], roots: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The definitions and shared parameters reachable from ``roots``."""
    definitions: dict[str, Any] = {}
    parameters: dict[str, Any] = {}
    todo: set[str] = set()
    _refs(roots, todo)
    seen: set[str] = set()
    while todo:
        ref = todo.pop()
        seen.add(ref)
        table, _, name = ref[2:].partition("/")
        node = doc[table].get(name)
        if node is None:
            continue
        (definitions if table == "definitions" else parameters)[name] = node
        found: set[str] = set()
        _refs(node, found)
        todo |= found - seen
    return dict(sorted(definitions.items())), dict(sorted(parameters.items()))


def build_v2(version: str, types: list[ResourceType] | None = None) -> dict[str, Any]:
    """The v2 document of what the lab serves: upstream's paths and definitions, reduced."""
    doc = upstream()
    served = _served_paths(types or TYPES)
    gv_roots = {_gv_prefix(t.group, t.version) + "/" for t in (types or TYPES)}
    paths: dict[str, Any] = {}
    for p, item in doc["paths"].items():
        if p in gv_roots:
            paths[p] = item
            continue
        if p not in served:
            continue
        rtype, sub = served[p]
        kept = {}
        for k, op in item.items():
            if k not in METHODS:
                kept[k] = op
                continue
            verb = ACTION_VERB.get(op.get("x-kubernetes-action", ""))
            if not sub and verb is not None and verb not in rtype.verbs:
                continue
            if sub == "status" and not rtype.has_status:
                continue
            kept[k] = op
        if any(k in METHODS for k in kept):
            paths[p] = kept
    definitions, parameters = _closure(doc, paths)
    return {"swagger": "2.0", "info": {"title": "Kubernetes", "version": version}, "paths": paths,
            "definitions": definitions, "parameters": parameters, "security": doc["security"],
            "securityDefinitions": doc["securityDefinitions"]}


# -- v2 → v3 (as kube-openapi's builder3 lays a group/version out) --------------------------------------

def _schema3(node: Any) -> Any:
    if isinstance(node, list):
        return [_schema3(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _schema3(v) for k, v in node.items() if k != "$ref"}
    ref = node.get("$ref")
    if isinstance(ref, str):
        ref3 = {"$ref": ref.replace("#/definitions/", "#/components/schemas/")}
        if not out:
            return ref3
        out["allOf"] = [ref3]
        return dict(sorted(out.items()))
    return out


def _param3(param: dict[str, Any]) -> dict[str, Any]:
    out = {k: param[k] for k in ("description", "in", "name", "required") if k in param}
    schema = {k: param[k] for k in ("type", "uniqueItems", "format", "items", "enum") if k in param}
    out["schema"] = schema
    return out


def _content(media: list[str], schema: Any) -> dict[str, Any]:
    return {m: {"schema": _schema3(schema)} for m in media}


def _operation3(op: dict[str, Any], doc2: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in ("description", "operationId", "tags"):
        if k in op:
            out[k] = op[k]
    params = []
    for p in op.get("parameters", []):
        p = _resolve_param(p, doc2)
        if p.get("in") == "body":
            out["requestBody"] = {"content": _content(op.get("consumes", ["*/*"]), p.get("schema", {}))}
        else:
            params.append(_param3(p))
    if params:
        out["parameters"] = params
    responses = {}
    for code, resp in op.get("responses", {}).items():
        r = {"description": resp.get("description", "")}
        if "schema" in resp:
            r["content"] = _content(op.get("produces", ["application/json"]), resp["schema"])
        responses[code] = r
    out["responses"] = responses
    for k, v in op.items():
        if k.startswith("x-"):
            out[k] = v
    return dict(sorted(out.items()))


def _resolve_param(p: dict[str, Any], doc2: dict[str, Any]) -> dict[str, Any]:
    ref = p.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/parameters/"):
        return doc2["parameters"][ref[len("#/parameters/"):]]
    return p


def build_v3(doc2: dict[str, Any], group: str, version: str) -> dict[str, Any]:
    """The v3 document of one group/version, from the v2 document's paths and definitions."""
    prefix = _gv_prefix(group, version) + "/"
    paths: dict[str, Any] = {}
    for p, item in doc2["paths"].items():
        if not p.startswith(prefix):
            continue
        item3: dict[str, Any] = {}
        for k, v in item.items():
            if k == "parameters":
                item3["parameters"] = [_param3(_resolve_param(x, doc2)) for x in v]
            elif k in METHODS:
                item3[k] = _operation3(v, doc2)
        paths[p] = dict(sorted(item3.items()))
    definitions, _ = _closure(doc2, {"paths": [item for p, item in doc2["paths"].items() if p.startswith(prefix)]})
    schemas = {name: _schema3(copy.deepcopy(d)) for name, d in definitions.items()}
    security = {name: dict(s) for name, s in doc2["securityDefinitions"].items()}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": version_of(doc2)}, "paths": paths,
            "components": {"schemas": schemas, "securitySchemes": security}, "security": doc2["security"]}


def version_of(doc2: dict[str, Any]) -> str:
    return str(doc2["info"]["version"])


# -- serving ----------------------------------------------------------------------------------------------

def etag_of(data: bytes) -> str:
    """kube-openapi's ETag and v3 hash: the uppercase hex SHA-512 of the served bytes.

    >>> etag_of(b"{}")[:16]
    '27C74670ADB75075'
    """
    return hashlib.sha512(data).hexdigest().upper()


@dataclass(frozen=True)
class Served:
    body: bytes
    etag: str


class OpenAPI:
    """The served documents for one server version, built on first use and kept (the spec does not change while
    the lab runs)."""

    def __init__(self, version: str, types: list[ResourceType] | None = None) -> None:
        self.version = version
        self.types = types or TYPES
        self._lock = threading.Lock()
        self._v2: Served | None = None
        self._v2_pb: Served | None = None
        self._v3: dict[str, Served] | None = None
        self._index: Served | None = None
        self.last_modified = time.time()

    def _build(self) -> None:
        with self._lock:
            if self._v3 is not None:
                return
            doc2 = build_v2(self.version, self.types)
            data = json.dumps(doc2, separators=(",", ":")).encode()
            self._v2 = Served(data, etag_of(data))
            v3: dict[str, Served] = {}
            for g, v in dict.fromkeys((t.group, t.version) for t in self.types):
                body = json.dumps(build_v3(doc2, g, v), separators=(",", ":")).encode()
                v3[_gv_key(g, v)] = Served(body, etag_of(body))
            index = {"paths": {k: {"serverRelativeURL": f"/openapi/v3/{k}?hash={s.etag}"} for k, s in sorted(v3.items())}}
            data = json.dumps(index, separators=(",", ":")).encode()
            self._index = Served(data, etag_of(data))
            self._v3 = v3

    def v2(self) -> Served:
        self._build()
        assert self._v2 is not None
        return self._v2

    def v2_protobuf(self) -> Served:
        """gnostic's protobuf of the v2 document; its ETag is the JSON's, as kube-openapi's."""
        self._build()
        with self._lock:
            if self._v2_pb is None:
                from .gnostic import encode_document

                assert self._v2 is not None
                self._v2_pb = Served(encode_document(json.loads(self._v2.body)), self._v2.etag)
            return self._v2_pb

    def v3_index(self) -> Served:
        self._build()
        assert self._index is not None
        return self._index

    def v3(self, gv: str) -> Served | None:
        self._build()
        assert self._v3 is not None
        return self._v3.get(gv)

    def answer(self, path: str, query: dict[str, str], headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]] | None:
        """(code, body, headers) for an ``/openapi/…`` GET as kube-openapi's handlers answer it; None when there
        is no such document."""
        accept = headers.get("accept", "") or "*/*"
        if path == "/openapi/v2":
            media = _negotiate(accept, ("application/json",) + V2_PROTOBUF)
            if media is None:
                return 406, b"", {"Vary": "Accept"}
            if media == "application/json":
                return _conditional(self.v2(), headers, {"Vary": "Accept"}, self.last_modified)
            return _conditional(self.v2_protobuf(), headers, {"Vary": "Accept", "Content-Type": V2_PROTOBUF[1]},
                                self.last_modified)
        if path == "/openapi/v3":
            return _conditional(self.v3_index(), headers, {}, self.last_modified)
        served = self.v3(path[len("/openapi/v3/"):]) if path.startswith("/openapi/v3/") else None
        if served is None:
            return None
        if _negotiate(accept, ("application/json",)) is None:  # v3's gnostic protobuf is not made
            return 406, b"", {"Vary": "Accept"}
        extra = {"Vary": "Accept"}
        want = query.get("hash", "")
        if want:
            if want != served.etag:
                location = f"{path}?hash={served.etag}"
                return 301, f'<a href="{location}">Moved Permanently</a>.\n\n'.encode(), {
                    "Location": location, "Content-Type": "text/html; charset=utf-8", "Vary": "Accept"}
            extra["Cache-Control"] = "public, immutable"
            extra["Expires"] = formatdate(time.time() + 365 * 86400, usegmt=True)
        return _conditional(served, headers, extra, self.last_modified)

    # -- schemas for validation --------------------------------------------------------------------------
    def definitions(self) -> dict[str, Any]:
        return upstream()["definitions"]


def _negotiate(accept: str, offers: tuple[str, ...]) -> str | None:
    """The offer served for an Accept header as kube-openapi picks it: clauses by q, then specificity (goautoneg),
    and for each clause the first offer it matches."""
    clauses = []
    for i, clause in enumerate(accept.split(",")):
        media, *params = (x.strip() for x in clause.split(";"))
        q = 1.0
        for param in params:
            k, _, v = param.partition("=")
            if k.strip() == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
        kind, _, sub = media.lower().partition("/")
        if q > 0 and kind:
            clauses.append((-q, (kind == "*") + (sub == "*"), i, kind, sub or "*"))
    for *_, kind, sub in sorted(clauses):
        for offer in offers:
            okind, _, osub = offer.partition("/")
            if kind in ("*", okind) and sub in ("*", osub):
                return offer
    return None


def _conditional(served: Served, headers: dict[str, str], extra: dict[str, str],
                 last_modified: float) -> tuple[int, bytes, dict[str, str]]:
    """Go's http.ServeContent for a quoted ETag: If-None-Match → 304."""
    etag = f'"{served.etag}"'
    out = {"Content-Type": "application/json", "Etag": etag, "Last-Modified": formatdate(last_modified, usegmt=True),
           **extra}
    inm = headers.get("if-none-match", "")
    if inm and any(tag.strip() in (etag, "*", f"W/{etag}") for tag in inm.split(",")):
        out.pop("Content-Type", None)
        return 304, b"", out
    return 200, served.body, out


# -- definitions by kind ----------------------------------------------------------------------------------

@functools.cache
def definition_for(group: str, version: str, kind: str) -> str | None:
    """The definition name whose `x-kubernetes-group-version-kind` is this kind (e.g. io.k8s.api.core.v1.Pod)."""
    for name, d in upstream()["definitions"].items():
        for gvk in d.get("x-kubernetes-group-version-kind", ()):
            if gvk.get("group", "") == group and gvk.get("version") == version and gvk.get("kind") == kind:
                return name
    return None
