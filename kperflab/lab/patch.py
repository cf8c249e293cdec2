"""PATCH bodies: JSON merge patch (RFC 7386), a strategic merge patch for the lists Kubernetes merges by
name, and JSON patch (RFC 6902, through `jsonpatch`)."""

from __future__ import annotations

from typing import Any

import jsonpatch

from .errors import APIError, bad_request
from .store import clone

# patchMergeKey of the lists a strategic merge patch merges by item (`+patchStrategy=merge`, from the Go types);
# lists not here are replaced whole, as upstream does for lists without a patch strategy
MERGE_KEYS = {"containers": "name", "initContainers": "name", "ephemeralContainers": "name", "env": "name",
              "volumes": "name", "volumeMounts": "mountPath", "volumeDevices": "devicePath", "conditions": "type",
              "imagePullSecrets": "name", "hostAliases": "ip", "podIPs": "ip", "hostIPs": "ip", "ownerReferences": "uid",
              "topologySpreadConstraints": "topologyKey", "resourceClaims": "name", "schedulingGates": "name",
              "addresses": "type", "tolerations": None}
CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
PRIMITIVE_MERGE = {("metadata", "finalizers")}  # lists of scalars merged as sets (`+patchStrategy=merge`)

MEDIA = ("application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json",
         "application/apply-patch+yaml")
MAX_OPERATIONS = 10_000  # kube-apiserver's limit on JSON patch operations


def merge_key(names: tuple[str, ...]) -> str | None:
    """The patchMergeKey of the list at ``names`` (field names from the root): container ports merge by
    containerPort, a Service's by port."""
    name = names[-1] if names else ""
    if name == "ports":
        if len(names) >= 2 and names[-2] in CONTAINER_LISTS:
            return "containerPort"
        return "port" if names == ("spec", "ports") else None
    return MERGE_KEYS.get(name)


def _size(doc: Any, cap: int) -> int:
    """How many values ``doc`` holds, counting up to ``cap``."""
    stack, n = [doc], 0
    while stack and n <= cap:
        node = stack.pop()
        n += 1
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return n


def merge(target: Any, patch: Any, strategic: bool = False, key: str = "", names: tuple[str, ...] = (),
          _owned: bool = False) -> Any:
    """RFC 7386 merge patch, or (``strategic``) a strategic merge patch: lists with a merge key merged by item
    (``$patch: delete`` removes one), ``$patch: replace``, ``$retainKeys``, ``$deleteFromPrimitiveList/<field>``,
    finalizers merged as a set. ``target`` is never changed: it is copied once, at the top (``_owned``: the inner
    calls work on that copy)."""
    if not isinstance(patch, dict):
        return clone(patch)
    if patch.get("$patch") == "replace" and strategic:
        return {k: v for k, v in patch.items() if k != "$patch"}
    out = (target if _owned else clone(target)) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if strategic and k.startswith("$"):
            if k.startswith("$deleteFromPrimitiveList/") and isinstance(v, list) and isinstance(out.get(k[25:]), list):
                out[k[25:]] = [x for x in out[k[25:]] if x not in v]
            continue
        path = (*names, k)
        mk = merge_key(path) if strategic else None
        if v is None:
            out.pop(k, None)
        elif strategic and isinstance(v, list) and isinstance(out.get(k), list) and path in PRIMITIVE_MERGE:
            out[k] = out[k] + [x for x in v if x not in out[k]]
        elif strategic and isinstance(v, list) and isinstance(out.get(k), list) and mk:
            merged = out[k]  # already this call's copy
            for item in v:
                if isinstance(item, dict) and mk in item:
                    idx = next((i for i, cur in enumerate(merged) if isinstance(cur, dict) and cur.get(mk) == item[mk]), None)
                    if item.get("$patch") == "delete":
                        if idx is not None:
                            merged.pop(idx)
                    elif idx is None:
                        merged.append({a: b for a, b in item.items() if a != "$patch"})
                    else:
                        merged[idx] = merge(merged[idx], item, True, k, path, _owned=True)
                elif not (isinstance(item, dict) and item.get("$patch")):
                    merged.append(clone(item))
            out[k] = merged
        else:
            out[k] = merge(out.get(k), v, strategic, k, path, _owned=True)
    retain = patch.get("$retainKeys") if strategic else None
    if isinstance(retain, list):
        out = {k: v for k, v in out.items() if k in retain}
    return out


def apply(content_type: str, current: dict[str, Any], body: Any) -> dict[str, Any]:
    ct = content_type.split(";")[0].strip()
    if ct == "application/json-patch+json":
        if not isinstance(body, list):
            raise bad_request("json patch must be a list of operations")
        if len(body) > MAX_OPERATIONS:
            raise APIError(413, "RequestEntityTooLarge", f"The allowed maximum operations in a JSON patch is {MAX_OPERATIONS}, "
                           f"got {len(body)}")
        cap = 4 * (_size(current, 1 << 22) + _size(body, 1 << 22))
        doc = current
        try:
            for op in body:  # one at a time: `copy` can double the document each time
                doc = jsonpatch.apply_patch(doc, [op])
                if isinstance(op, dict) and op.get("op") == "copy" and _size(doc, cap) > cap:
                    raise bad_request("the JSON patch grows the object beyond what the request could make")
            return doc
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError, AttributeError,
                ValueError) as exc:
            raise APIError(422, "Invalid", f"the server rejected our request due to an error in our request: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request("the patch must be a JSON object")
    if ct == "application/merge-patch+json":
        return merge(current, body)
    if ct == "application/strategic-merge-patch+json":
        return merge(current, body, strategic=True)
    raise APIError(415, "UnsupportedMediaType",
                   f"the body of the request was in an unknown format - accepted media types include: {', '.join(MEDIA)}")
