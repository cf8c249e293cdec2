"""Field managers: `metadata.managedFields` on every write and server-side apply, as kube-apiserver keeps them.

kube-apiserver tracks, per manager, the set of fields it set (`apimachinery/pkg/util/managedfields/internal`, on top of
sigs.k8s.io/structured-merge-diff). This module does the same on plain JSON objects:

- a field set is a set of paths; a path is a tuple of upstream's FieldsV1 tokens: ``f:<field>``, ``k:{"name":"c"}`` (an
  item of a list keyed by its merge keys), ``v:"x"`` (an item of a set), so ``fieldsV1`` is the set written as a tree,
  ``.`` marking a node that is itself a member;
- an Update (create, PUT, every PATCH but apply) gives its manager the fields it added or changed and takes them from
  the others (`managedfieldsupdater.go`, `merge/update.go`); the time moves only when it took something;
- an Apply merges the configuration into the live object by ownership: the applier owns exactly the fields it sends,
  what it owned before and no longer sends is removed unless someone else owns it, and changing a field another
  manager owns is a conflict (409, `conflict.go`'s wording) unless ``force=true``;
- upstream's wrappers: `stripmeta` (name, uid, resourceVersion … owned by no one), the reset fields (status is not
  owned through the main resource, only status through `/status`), `before-first-apply`, the last-applied annotation
  kept in step for manager ``kubectl`` and client-side-apply conflicts allowed for it (`lastapplied*.go`), at most ten
  Update entries (`ancient-changes`).

The schema knowledge structured-merge-diff takes from OpenAPI (list types and keys, atomic structs and maps, Go value
structs that are never absent) is the small table below, for the fields of the kinds the lab serves.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from . import errors

APPLY = "application/apply-patch+yaml"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
MAX_MANAGER = 128  # validation.FieldManagerMaxLength
MAX_UPDATE_MANAGERS = 10  # DefaultMaxUpdateManagers

Path = tuple[str, ...]
PathSet = set[Path]
_MISSING = object()

# -- schema: what structured-merge-diff reads from the OpenAPI of built-in kinds ------------------------------------
CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
# `x-kubernetes-list-type: map` and its keys (from `+listType=map +listMapKey=…` or patchStrategy merge + patchMergeKey)
LIST_MAP_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",), "initContainers": ("name",), "ephemeralContainers": ("name",), "env": ("name",),
    "volumes": ("name",), "volumeMounts": ("mountPath",), "volumeDevices": ("devicePath",),
    "imagePullSecrets": ("name",), "conditions": ("type",), "podIPs": ("ip",), "hostIPs": ("ip",),
    "hostAliases": ("ip",), "ownerReferences": ("uid",), "topologySpreadConstraints": ("topologyKey", "whenUnsatisfiable"),
    "resourceClaims": ("name",), "schedulingGates": ("name",), "resizePolicy": ("resourceName",),
}
KEY_DEFAULTS = {"protocol": "TCP"}  # key fields with an OpenAPI default count with it when left out
# `+structType=atomic` / `+mapType=atomic`: replaced whole, owned as one field
ATOMIC_FIELDS = frozenset({"selector", "nodeSelector", "labelSelector", "namespaceSelector", "fieldRef",
                           "resourceFieldRef", "configMapKeyRef", "secretKeyRef", "involvedObject", "claimRef",
                           "dataSource", "dataSourceRef", "requiredDuringSchedulingIgnoredDuringExecution"})
ATOMIC_ITEMS = frozenset({"imagePullSecrets"})  # items that are atomic structs (LocalObjectReference)
# fields whose Go type is a struct value, not a pointer: a decoded object always has them (empty at worst), so they
# are never "added" as a whole
VALUE_STRUCTS = {("metadata",), ("spec",), ("status",), ("spec", "strategy"), ("spec", "updateStrategy"),
                 ("spec", "scaleTargetRef"), ("roleRef",), ("source",), ("status", "loadBalancer"),
                 ("status", "nodeInfo"), ("status", "daemonEndpoints"), ("status", "daemonEndpoints", "kubeletEndpoint")}
# metadata no manager owns (internal/stripmeta.go)
STRIPPED = {("f:apiVersion",), ("f:kind",), ("f:metadata",)} | {
    ("f:metadata", f"f:{f}") for f in ("name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName",
                                        "generation", "managedFields", "resourceVersion")}


def _list_type(kind: str, names: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """("atomic"|"map"|"set", keys) of the list at ``names`` (field names from the root, list items left out)."""
    name = names[-1] if names else ""
    if name == "ports":
        if len(names) >= 2 and names[-2] in CONTAINER_LISTS:
            return "map", ("containerPort", "protocol")
        if kind == "Service" and names == ("spec", "ports"):
            return "map", ("port", "protocol")
        return "atomic", ()
    if name == "finalizers":
        return ("set", ()) if names == ("metadata", "finalizers") else ("atomic", ())
    if name in LIST_MAP_KEYS:
        return "map", LIST_MAP_KEYS[name]
    return "atomic", ()


def _atomic(names: tuple[str, ...]) -> bool:
    return bool(names) and names[-1] in ATOMIC_FIELDS


def _value_struct(kind: str, names: tuple[str, ...]) -> bool:
    if names in VALUE_STRUCTS:
        return True
    n = len(names)
    if n >= 2 and names[-1] == "template" and names[-2] == "spec":
        return kind != "ReplicationController"  # its template is a pointer
    if n >= 2 and names[-2] == "template" and names[-1] in ("metadata", "spec"):
        return True
    if n >= 2 and names[-1] == "resources" and (names[-2] in CONTAINER_LISTS or names == ("spec", "resources")):
        return True
    return False


def _null_when_empty(kind: str, names: tuple[str, ...]) -> bool:
    """Lists without `omitempty` in their Go json tag: a decoded object has them (null at worst), so they are never
    "added" as a whole either (PodSpec.containers, EndpointSlice.endpoints)."""
    return names[-2:] == ("spec", "containers") or (kind == "EndpointSlice" and names == ("endpoints",))


def _text(value: Any) -> str:
    """A canonical JSON text: equal texts are equal values as decoded JSON (true is not 1)."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def go_json(value: Any) -> str:
    """JSON as Go's encoding/json writes it: compact, map keys sorted, <, > and & escaped."""
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _item_token(kind: str, names: tuple[str, ...], ltype: str, keys: tuple[str, ...], item: Any) -> str | None:
    """The path element of a list item; None when the item cannot be keyed (then the list is treated as atomic)."""
    if ltype == "set":
        return "v:" + go_json(item) if not isinstance(item, (dict, list)) else None
    if not isinstance(item, dict):
        return None
    fields = {}
    for k in keys:
        v = item.get(k)
        if v is None:
            if k not in KEY_DEFAULTS:
                return None
            v = KEY_DEFAULTS[k]
        if isinstance(v, (dict, list)):
            return None
        fields[k] = v
    return "k:" + go_json(fields)


def _index(kind: str, names: tuple[str, ...], items: Any) -> list[tuple[str, Any]] | None:
    """[(token, item)] of a keyed list, or None when it must be handled as atomic (not a list, unkeyable, duplicates)."""
    ltype, keys = _list_type(kind, names)
    if ltype == "atomic" or not isinstance(items, list):
        return None
    out, seen = [], set()
    for item in items:
        tok = _item_token(kind, names, ltype, keys, item)
        if tok is None or tok in seen:
            return None
        seen.add(tok)
        out.append((tok, item))
    return out


# -- field sets ------------------------------------------------------------------------------------------------
def _present(v: Any) -> bool:
    return v is not _MISSING and v is not None


def _empty(v: Any) -> bool:
    return not _present(v) or v == {} or v == []


def _same(a: Any, b: Any) -> bool:
    """Equal as decoded JSON values (True is not 1; 1 and 1.0 are the same number)."""
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        return type(a) is type(b) and go_json(a) == go_json(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def to_field_set(kind: str, obj: Any) -> PathSet:
    """The fields an applied configuration sets (typed.ToFieldSet): leaves, list items, empty or null values."""
    out: PathSet = set()

    def walk(path: Path, names: tuple[str, ...], value: Any) -> None:
        if isinstance(value, dict):
            if _atomic(names):
                out.add(path)
                return
            for k, v in value.items():
                child = (*path, f"f:{k}")
                walk(child, (*names, k), v)
                if v is None or v == {}:
                    out.add(child)
        elif isinstance(value, list):
            idx = _index(kind, names, value)
            if idx is None:
                out.add(path)
                return
            for tok, item in idx:
                item_path = (*path, tok)
                out.add(item_path)
                if tok.startswith("k:") and names[-1] not in ATOMIC_ITEMS:
                    for k, v in item.items():
                        child = (*item_path, f"f:{k}")
                        walk(child, (*names, k), v)
                        if v is None or v == {}:
                            out.add(child)
        else:
            out.add(path)

    walk((), (), obj)
    return out


def compare(kind: str, lhs: Any, rhs: Any) -> tuple[PathSet, PathSet, PathSet]:
    """(added, modified, removed) from ``lhs`` to ``rhs`` (typed.Compare), both read as decoded Go objects: value
    structs exist even when empty, null is absent."""
    added: PathSet = set()
    modified: PathSet = set()
    removed: PathSet = set()

    def leaf(path: Path, a: Any, b: Any) -> None:
        if not _present(a) and not _present(b):
            return
        if not _present(a):
            added.add(path)
        elif not _present(b):
            removed.add(path)
        elif not _same(a, b):
            modified.add(path)

    def walk(path: Path, names: tuple[str, ...], a: Any, b: Any, a_parent: bool, b_parent: bool) -> None:
        if not _present(a) and a_parent and _value_struct(kind, names):
            a = {}
        if not _present(b) and b_parent and _value_struct(kind, names):
            b = {}
        if not _present(a) and a_parent and _null_when_empty(kind, names):
            a = []
        if not _present(b) and b_parent and _null_when_empty(kind, names):
            b = []
        if not _present(a) and not _present(b):
            return
        if type(a) is type(b) and type(a) in (dict, list) and _text(a) == _text(b):
            return  # the same JSON: nothing under here changed (one C encoding instead of a walk in Python)
        probe = a if _present(a) else b
        other = b if _present(a) else a
        if isinstance(probe, dict) and (not _present(other) or isinstance(other, dict)) and not _atomic(names):
            if _empty(a) and _empty(b):
                leaf(path, a, b)
                return
            if not _present(a):
                added.add(path)
            elif not _present(b):
                removed.add(path)
            da = a if isinstance(a, dict) else {}
            db = b if isinstance(b, dict) else {}
            for k in list(da) + [k for k in db if k not in da]:
                walk((*path, f"f:{k}"), (*names, k), da.get(k, _MISSING), db.get(k, _MISSING),
                     _present(a), _present(b))
            return
        if isinstance(probe, list) and (not _present(other) or isinstance(other, list)):
            ia = _index(kind, names, a) if _present(a) else []
            ib = _index(kind, names, b) if _present(b) else []
            if ia is not None and ib is not None:
                if _empty(a) and _empty(b):
                    leaf(path, a, b)
                    return
                if not _present(a):
                    added.add(path)
                elif not _present(b):
                    removed.add(path)
                ma, mb = dict(ia), dict(ib)
                for tok in list(ma) + [t for t in mb if t not in ma]:
                    ip = (*path, tok)
                    x, y = ma.get(tok, _MISSING), mb.get(tok, _MISSING)
                    if tok.startswith("v:") or names[-1] in ATOMIC_ITEMS:
                        leaf(ip, x, y)
                    else:
                        walk(ip, names, x, y, False, False)
                return
        leaf(path, a, b)

    walk((), (), lhs, rhs, True, True)
    return added, modified, removed


def _ensure_named_members(paths: PathSet) -> PathSet:
    """Add the struct-field prefixes of every path (fieldpath.Set.EnsureNamedFieldsAreMembers)."""
    out = set(paths)
    for p in paths:
        for i in range(1, len(p)):
            if p[i - 1].startswith("f:"):
                out.add(p[:i])
    return out


# -- FieldsV1 -------------------------------------------------------------------------------------------------
def _token_key(tok: str) -> tuple[Any, ...]:
    """PathElement order: field names, then keys, then values, then indexes."""
    kind, body = tok[:2], tok[2:]
    if kind == "f:":
        return (0, body.encode())
    if kind == "k:":
        try:
            fields = json.loads(body)
        except ValueError:
            return (1, ((body.encode(), (9, "")),))
        return (1, tuple((name.encode(), _value_key(v)) for name, v in sorted(fields.items())))
    if kind == "v:":
        try:
            return (2, _value_key(json.loads(body)))
        except ValueError:
            return (2, (9, body))
    return (3, int(body) if body.isdigit() else 0)


def _value_key(v: Any) -> tuple[Any, ...]:
    if isinstance(v, bool):
        return (2, int(v))
    if isinstance(v, (int, float)):
        return (0, v)
    if isinstance(v, str):
        return (1, v.encode())
    if v is None:
        return (5, 0)
    return (3 if isinstance(v, list) else 4, go_json(v))


def path_key(path: Path) -> tuple[Any, ...]:
    return tuple(_token_key(t) for t in path)


def encode_fields(paths: PathSet) -> dict[str, Any]:
    """A field set as FieldsV1: a tree of tokens, ``.`` for a node that is a member and has children."""
    tree: dict[str, Any] = {}
    members: set[Path] = set(paths)
    for p in paths:
        node = tree
        for tok in p:
            node = node.setdefault(tok, {})

    def emit(node: dict[str, Any], path: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if node and path in members:
            out["."] = {}
        for tok in sorted(node, key=_token_key):
            out[tok] = emit(node[tok], (*path, tok))
        return out

    return emit(tree, ())


def decode_fields(tree: Any) -> PathSet:
    if not isinstance(tree, dict):
        raise ValueError("fieldsV1 must be an object")
    out: PathSet = set()

    def walk(node: dict[str, Any], path: Path) -> None:
        for tok, sub in node.items():
            if tok == ".":
                if path:
                    out.add(path)
                continue
            if tok[:2] not in ("f:", "k:", "v:", "i:") or not isinstance(sub, dict):
                raise ValueError(f"unexpected key {tok!r} in fieldsV1")
            child = (*path, tok)
            if not sub:
                out.add(child)
            else:
                walk(sub, child)

    walk(tree, ())
    return out


def path_string(path: Path) -> str:
    """fieldpath.Path.String(): ``.spec.template.spec.containers[name="c"].image``, ``.metadata.finalizers[="x"]``."""
    parts = []
    for tok in path:
        kind, body = tok[:2], tok[2:]
        if kind == "f:":
            parts.append("." + body)
        elif kind == "k:":
            fields = json.loads(body)
            parts.append("[" + ",".join(f"{k}={_to_string(v)}" for k, v in sorted(fields.items())) + "]")
        elif kind == "v:":
            parts.append("[=" + _to_string(json.loads(body)) + "]")
        else:
            parts.append(f"[{body}]")
    return "".join(parts)


def _to_string(v: Any) -> str:
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    return go_json(v)


# -- managers ---------------------------------------------------------------------------------------------------
Ident = tuple[str, str, str, str]  # manager, operation, apiVersion ("" for Apply), subresource


def _ident_json(ident: Ident) -> str:
    """BuildManagerIdentifier: the entry without time and fields, in ManagedFieldsEntry's field order."""
    manager, op, api_version, sub = ident
    d: dict[str, str] = {}
    if manager:
        d["manager"] = manager
    if op:
        d["operation"] = op
    if api_version:
        d["apiVersion"] = api_version
    if sub:
        d["subresource"] = sub
    return json.dumps(d, separators=(",", ":"), ensure_ascii=False)


class Managed:
    """Decoded managedFields: per manager identity its field set, apiVersion and time."""

    def __init__(self) -> None:
        self.sets: dict[Ident, PathSet] = {}
        self.versions: dict[Ident, str] = {}
        self.times: dict[Ident, str | None] = {}

    @classmethod
    def decode(cls, entries: Any) -> Managed:
        """DecodeManagedFields; ValueError for entries kube-apiserver could not read."""
        m = cls()
        if entries is None:
            return m
        if not isinstance(entries, list):
            raise ValueError("managedFields must be a list")
        for e in entries:
            if not isinstance(e, dict):
                raise ValueError("a managedFields entry must be an object")
            if e.get("fieldsType") != "FieldsV1":
                raise ValueError(f"invalid fieldsType: {e.get('fieldsType')!r}")
            op, manager, sub = e.get("operation", ""), e.get("manager", ""), e.get("subresource", "")
            api_version = e.get("apiVersion", "")
            if not all(isinstance(x, str) for x in (op, manager, sub, api_version)):
                raise ValueError("managedFields strings")
            if op not in ("Apply", "Update"):
                raise ValueError("operation must be `Apply` or `Update`")
            ident = (manager, op, "" if op == "Apply" else api_version, sub)
            if ident in m.sets:
                raise ValueError(f"duplicate entry for manager {_ident_json(ident)}")
            m.sets[ident] = decode_fields(e.get("fieldsV1") or {})
            m.versions[ident] = api_version
            t = e.get("time")
            m.times[ident] = t if isinstance(t, str) else None
        return m

    def encode(self) -> list[dict[str, Any]] | None:
        entries = []
        for ident, paths in self.sets.items():
            if not paths:
                continue
            manager, op, _, sub = ident
            e: dict[str, Any] = {"manager": manager, "operation": op, "apiVersion": self.versions.get(ident, "")}
            if self.times.get(ident):
                e["time"] = self.times[ident]
            e["fieldsType"] = "FieldsV1"
            e["fieldsV1"] = encode_fields(paths)
            if sub:
                e["subresource"] = sub
            entries.append(e)
        # sortEncodedManagedFields: operation, time, manager, apiVersion, subresource
        entries.sort(key=lambda e: (e["operation"], e.get("time") or "", e["manager"], e["apiVersion"],
                                    e.get("subresource", "")))
        return entries or None

    def drop_empty(self) -> None:
        for ident in [i for i, s in self.sets.items() if not s]:
            del self.sets[ident]
            self.versions.pop(ident, None)
            self.times.pop(ident, None)

    def cap(self) -> None:
        """capManagersManager: more than ten Update entries → the oldest merged into `ancient-changes` per version."""
        updaters = [i for i in self.sets if i[1] != "Apply"]
        if len(updaters) <= MAX_UPDATE_MANAGERS:
            return
        updaters.sort(key=lambda i: (self.times.get(i) or "", _ident_json(i)))
        first_of: dict[str, Ident] = {}
        length = len(updaters)
        for ident in updaters:
            if length <= MAX_UPDATE_MANAGERS:
                break
            version = self.versions.get(ident, "")
            bucket: Ident = ("ancient-changes", "Update", version, "")
            if version in first_of:
                if bucket not in self.sets:
                    first = first_of[version]
                    self.sets[bucket] = self.sets.pop(first)
                    self.versions[bucket] = version
                    self.times.pop(first, None)
                self.sets[bucket] = self.sets[bucket] | self.sets.pop(ident)
                self.times[bucket] = self.times.pop(ident, None)
                self.versions.pop(ident, None)
                length -= 1
            else:
                first_of[version] = ident


def _filter(paths: PathSet, subresource: str, has_status: bool) -> PathSet:
    """stripmeta plus the reset fields: status only through /status, only status (spec for finalize) through it."""
    out = {p for p in paths if p not in STRIPPED}
    if subresource in ("status", "finalize"):
        top = "f:status" if subresource == "status" else "f:spec"
        return {p for p in out if p and p[0] == top}
    if subresource == "scale":
        return {p for p in out if p[:2] == ("f:spec", "f:replicas")}
    if has_status:
        out = {p for p in out if not p or p[0] != "f:status"}
    return out


def manager_name(field_manager: str, user_agent: str) -> str:
    """managerOrUserAgent: the fieldManager option, else the User-Agent up to its first '/', printable characters
    only, at most 128 bytes (`kubectl/v1.32.0 (linux/amd64) …` → kubectl, `OpenAPI-Generator/37.0.0/python` →
    OpenAPI-Generator)."""
    if field_manager:
        return field_manager
    out, size = [], 0
    for ch in user_agent.split("/")[0]:
        if not ch.isprintable():
            continue
        n = len(ch.encode("utf-8", "surrogatepass"))
        if size + n > MAX_MANAGER:
            break
        out.append(ch)
        size += n
    return "".join(out)


def check_options(options_kind: str, field_manager: str, *, apply: bool = False, force: str | None = None) -> None:
    """ValidatePatchOptions/ValidateCreateOptions/ValidateUpdateOptions' fieldManager and force rules: a 422 with
    kube-apiserver's words."""
    causes = []
    if options_kind == "PatchOptions":
        if not apply and force is not None:
            causes.append({"reason": "FieldValueForbidden", "message": "Forbidden: may not be specified for non-apply patch",
                           "field": "force"})
        if apply and not field_manager:
            causes.append({"reason": "FieldValueRequired", "message": "Required value: is required for apply patch",
                           "field": "fieldManager"})
    if len(field_manager.encode("utf-8", "surrogatepass")) > MAX_MANAGER:
        causes.append({"reason": "FieldValueTooLong", "message": f"Too long: may not be more than {MAX_MANAGER} bytes",
                       "field": "fieldManager"})
    at = 0  # a byte offset, as Go ranges over a string
    for ch in field_manager:
        if not ch.isprintable():
            causes.append({"reason": "FieldValueInvalid", "field": "fieldManager",
                           "message": f"Invalid value: {_go_quote(field_manager)}: invalid character "
                                      f"U+{ord(ch):04X} (at position {at})"})
        at += len(ch.encode("utf-8", "surrogatepass"))
    if causes:
        raise errors.invalid(options_kind, "", causes, "meta.k8s.io")


def _go_quote(text: str) -> str:
    """Go's %q of a string."""
    short = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v",
             '"': '\\"', "\\": "\\\\"}
    out = []
    for ch in text:
        if ch in short:
            out.append(short[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _without_managed(obj: dict[str, Any] | None) -> dict[str, Any]:
    if not obj:
        return {}
    out = copy.copy(obj)
    meta = dict(_meta(obj))
    meta.pop("managedFields", None)
    out["metadata"] = meta
    return out


def _live_or_new(live: dict[str, Any] | None, new: dict[str, Any], subresource: str) -> tuple[Managed, bool]:
    """decodeLiveOrNew: (managed, reset). A write may set managedFields itself; `[]` or `[{}]` clears them."""
    live_managed = _meta(live or {}).get("managedFields")
    if not subresource:
        sent = _meta(new).get("managedFields")
        if isinstance(sent, list) and (sent == [] or sent == [{}]):
            return Managed(), True
        try:
            m = Managed.decode(sent)
            if m.sets:
                return m, False
        except ValueError:
            pass
    try:
        return Managed.decode(live_managed), False
    except ValueError:
        return Managed(), False


def _record_update(managed: Managed, kind: str, api_version: str, live: dict[str, Any], new: dict[str, Any],
                   manager: str, subresource: str, now: str, has_status: bool) -> None:
    added, modified, removed = (_filter(s, subresource, has_status) for s in compare(kind, live, new))
    taken = added | modified
    for ident in managed.sets:
        managed.sets[ident] = managed.sets[ident] - taken - removed
    ident: Ident = (manager, "Update", api_version, subresource)
    if taken:  # the time moves only when this write took fields ("current-operation")
        managed.sets[ident] = managed.sets.get(ident, set()) | taken
        managed.versions[ident] = api_version
        managed.times[ident] = now
    managed.drop_empty()
    managed.cap()


def update(kind: str, api_version: str, live: dict[str, Any] | None, new: dict[str, Any], manager: str, now: str, *,
           subresource: str = "", has_status: bool = False) -> list[dict[str, Any]] | None:
    """The managedFields of ``new`` after an Update-type write (``live`` None for a create)."""
    managed, reset = _live_or_new(live, new, subresource)
    if reset and live:
        return None  # cleared: tracking starts again with the next apply (skipNonAppliedManager)
    _record_update(managed, kind, api_version, _without_managed(live), _without_managed(new), manager, subresource,
                   now, has_status)
    return managed.encode()


def put(meta: dict[str, Any], fields: list[dict[str, Any]] | None) -> None:
    """Set an object's managedFields (none: the key goes)."""
    if fields:
        meta["managedFields"] = fields
    else:
        meta.pop("managedFields", None)


def conflict_error(conflicts: list[tuple[Ident, Path]]) -> errors.APIError:
    """merge.Conflicts → NewConflictError (internal/conflict.go)."""
    conflicts = sorted(conflicts, key=lambda c: (_ident_json(c[0]), path_key(c[1])))

    def who(ident: Ident) -> str:
        manager, op, api_version, sub = ident
        text = json.dumps(manager, ensure_ascii=False)
        if sub:
            text += f" with subresource {json.dumps(sub, ensure_ascii=False)}"
        return f"{text} using {api_version}" if op == "Update" else text

    causes = [{"reason": "FieldManagerConflict", "message": f"conflict with {who(i)}", "field": path_string(p)}
              for i, p in conflicts]
    if len(conflicts) == 1:
        message = f"Apply failed with 1 conflict: conflict with {who(conflicts[0][0])}: {path_string(conflicts[0][1])}"
    else:
        lines = []
        for ident in sorted({i for i, _ in conflicts}, key=_ident_json):
            lines.append(f"conflicts with {who(ident)}:")
            lines += [f"- {path_string(p)}" for i, p in conflicts if i == ident]
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return errors.APIError(409, "Conflict", message, details={"causes": causes})


# -- apply ------------------------------------------------------------------------------------------------------
def merge(kind: str, live: Any, config: Any, names: tuple[str, ...] = ()) -> Any:
    """typed.Merge: the configuration over the live object; granular structs and maps by field, keyed lists by
    item, sets by value, everything else replaced."""
    if isinstance(config, dict) and isinstance(live, dict) and not _atomic(names):
        out = copy.deepcopy(live)
        for k, v in config.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = merge(kind, live.get(k), v, (*names, k))
        return out
    if isinstance(config, list) and isinstance(live, list):
        il, ic = _index(kind, names, live), _index(kind, names, config)
        if il is not None and ic is not None:
            ml, mc = dict(il), dict(ic)

            def one(tok: str) -> Any:
                if tok not in ml:
                    return copy.deepcopy(mc[tok])
                if tok.startswith("v:") or names[-1] in ATOMIC_ITEMS:
                    return copy.deepcopy(mc[tok])
                return merge(kind, ml[tok], mc[tok], names)

            out, done, ci = [], set(), 0
            for tok, item in il:
                if tok not in mc:
                    out.append(copy.deepcopy(item))
                    continue
                while tok not in done and ci < len(ic):  # the configuration's order for what it lists
                    ctok = ic[ci][0]
                    ci += 1
                    if ctok not in done:
                        out.append(one(ctok))
                        done.add(ctok)
            for ctok, _ in ic[ci:]:
                if ctok not in done:
                    out.append(one(ctok))
                    done.add(ctok)
            return out
    return copy.deepcopy(config)


def remove_path(kind: str, obj: Any, path: Path) -> None:
    """Remove one field, list item or set value from ``obj`` (no error when it is not there)."""
    node, names = obj, ()
    for depth, tok in enumerate(path):
        last = depth == len(path) - 1
        if tok.startswith("f:"):
            if not isinstance(node, dict):
                return
            key = tok[2:]
            if last:
                node.pop(key, None)
                return
            node, names = node.get(key), (*names, key)
        else:
            if not isinstance(node, list):
                return
            idx = _index(kind, names, node)
            if idx is None:
                return
            pos = next((i for i, (t, _) in enumerate(idx) if t == tok), None)
            if pos is None:
                return
            if last:
                node.pop(pos)
                return
            node = node[pos]


def _allowed_by_last_applied(kind: str, api_version: str, live: dict[str, Any]) -> PathSet | None:
    """lastAppliedManager: fields kubectl's client-side apply set and that still hold its value may be taken by
    `kubectl apply --server-side` without a conflict."""
    text = (_meta(live).get("annotations") or {}).get(LAST_APPLIED)
    if not isinstance(text, str) or not text:
        return None
    try:
        last = json.loads(text)
    except ValueError:
        return None
    if not isinstance(last, dict) or last.get("apiVersion") != api_version:
        return None
    added, modified, removed = compare(kind, last, live)
    return to_field_set(kind, last) - added - modified - removed


def apply(kind: str, api_version: str, live: dict[str, Any] | None, config: dict[str, Any], manager: str, force: bool,
          now: str, *, subresource: str = "", has_status: bool = False) -> tuple[dict[str, Any], bool]:
    """Server-side apply of ``config`` by ``manager`` onto ``live`` (None: the object does not exist yet).

    Returns (the merged object with its managedFields, whether the object itself changed); raises the 409 of
    conflicting fields unless ``force``. The merged object is not defaulted or validated yet."""
    live_clean = _without_managed(live)
    try:
        managed = Managed.decode(_meta(live or {}).get("managedFields"))
    except ValueError:
        managed = Managed()
    if live and not managed.sets:  # skipNonAppliedManager: what was there before becomes `before-first-apply`'s
        _record_update(managed, kind, api_version, {}, live_clean, "before-first-apply", "", now, has_status)
    config = copy.deepcopy(config)
    if has_status and not subresource:
        config.pop("status", None)  # reset by the strategy: not applied through the main resource
    merged = merge(kind, live_clean, config)
    ident: Ident = (manager, "Apply", "", subresource)
    last_set = managed.sets.get(ident)
    new_set = _filter(to_field_set(kind, config), subresource, has_status)
    managed.sets[ident] = new_set
    managed.versions[ident] = api_version
    if last_set:  # prune what this applier set before and no longer does, unless someone owns it
        owned: PathSet = to_field_set(kind, config)  # unstripped here: metadata.name keeps metadata
        for s in managed.sets.values():
            owned |= s
        gone = _ensure_named_members(last_set) - _ensure_named_members(owned)
        for p in sorted(gone, key=len):
            remove_path(kind, merged, p)
    added, modified, removed = (_filter(s, subresource, has_status) for s in compare(kind, live_clean, merged))
    conflicts = [(i, p) for i, s in managed.sets.items() if i != ident for p in s & (added | modified)]
    if conflicts and not force:
        allowed = _allowed_by_last_applied(kind, api_version, live_clean) if manager == "kubectl" else None
        left = [c for c in conflicts if allowed is None or c[1] not in allowed]
        if left:
            raise conflict_error(left)
    for i in list(managed.sets):
        if i != ident:
            managed.sets[i] = managed.sets[i] - (added | modified) - removed
    changed = not _same(merged, live_clean) if live else True
    if changed:
        managed.times[ident] = now
    else:
        managed.times.setdefault(ident, None)
    if manager == "kubectl" and live and (_meta(live).get("annotations") or {}).get(LAST_APPLIED):
        # lastAppliedUpdater: keep the client-side apply annotation in step with what kubectl applied
        applied = copy.deepcopy(config)
        ann = _meta(applied).get("annotations")
        if isinstance(ann, dict):
            ann.pop(LAST_APPLIED, None)
            if not ann:
                applied["metadata"].pop("annotations")
        text = go_json(applied) + "\n"
        meta = merged.setdefault("metadata", {})
        if (meta.get("annotations") or {}).get(LAST_APPLIED) != text:
            meta.setdefault("annotations", {})[LAST_APPLIED] = text
            changed = True
    managed.drop_empty()
    encoded = managed.encode()
    meta = merged.setdefault("metadata", {})
    if encoded:
        meta["managedFields"] = encoded
    else:
        meta.pop("managedFields", None)
    return merged, changed


def check_applied(kind: str, group_version: str, config: Any) -> dict[str, Any]:
    """The checks of an apply body before merging: an object of the URL's kind and version (versionCheckManager:
    `invalid object type: apps/v1, Kind=Deployment`), without managedFields."""
    if not isinstance(config, dict):
        raise errors.bad_request("error decoding YAML: error unmarshaling JSON: while decoding JSON: json: cannot "
                                 f"unmarshal {_go_type(config)} into Go value of type map[string]interface {{}}")
    gv, k = config.get("apiVersion"), config.get("kind")
    if gv != group_version or k != kind:
        gv_text = gv if isinstance(gv, str) else ""
        group, _, version = gv_text.rpartition("/")
        raise errors.bad_request(f"invalid object type: {group}/{version}, Kind={k if isinstance(k, str) else ''}")
    meta = config.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise errors.bad_request("metadata must be an object")
    if isinstance(meta, dict) and meta.get("managedFields") is not None:
        raise errors.bad_request("metadata.managedFields must be nil")
    return config


def _go_type(v: Any) -> str:
    return {list: "array", str: "string", bool: "bool", type(None): "null"}.get(type(v), "number")
