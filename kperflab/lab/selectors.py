"""Label and field selectors, parsed the way kube-apiserver reads them."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .errors import bad_request

Predicate = Callable[[dict[str, Any]], bool]

_REQ = re.compile(
    r"""\s*(?:
      (?P<notexists>!\s*(?P<nk>[A-Za-z0-9_./-]+))
    | (?P<key>[A-Za-z0-9_./-]+)\s*
      (?:(?P<op>==|=|!=)\s*(?P<val>[A-Za-z0-9_.-]*)
        |\s+(?P<setop>in|notin)\s*\((?P<set>[^)]*)\)
      )?
    )\s*(?:,|$)""",
    re.X,
)


def parse_label_selector(text: str | None) -> Predicate:
    """``app=web,tier!=db,env in (a,b),!legacy`` → a predicate on an object's labels.

    >>> parse_label_selector("app=web,!x")({"metadata": {"labels": {"app": "web"}}})
    True
    """
    if not text:
        return lambda obj: True
    reqs: list[Predicate] = []
    pos = 0
    while pos < len(text):
        m = _REQ.match(text, pos)
        if not m or m.end() == pos:
            raise bad_request(f'unable to parse requirement: found \'{text[pos:pos + 20]}\', expected: identifier')
        pos = m.end()
        if m.group("notexists"):
            k = m.group("nk")
            reqs.append(lambda labels, k=k: k not in labels)
        elif m.group("setop"):
            k, values = m.group("key"), {v.strip() for v in m.group("set").split(",") if v.strip()}
            if m.group("setop") == "in":
                reqs.append(lambda labels, k=k, vs=values: labels.get(k) in vs)
            else:
                reqs.append(lambda labels, k=k, vs=values: labels.get(k) not in vs)
        elif m.group("op"):
            k, v = m.group("key"), m.group("val")
            if m.group("op") == "!=":
                reqs.append(lambda labels, k=k, v=v: labels.get(k) != v)
            else:
                reqs.append(lambda labels, k=k, v=v: labels.get(k) == v)
        else:
            k = m.group("key")
            reqs.append(lambda labels, k=k: k in labels)

    def pred(obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(r(labels) for r in reqs)

    return pred


def field_value(obj: dict[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def parse_field_selector(text: str | None, allowed: frozenset[str] | None = None, kind: str = "") -> Predicate:
    """``metadata.name=x,status.phase!=Running`` → a predicate. ``allowed`` limits the field names,
    as kube-apiserver does per resource ("field label not supported")."""
    if not text:
        return lambda obj: True
    reqs: list[tuple[str, str, str]] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*)", part)
        if not m:
            raise bad_request(f'invalid selector: \'{text}\'; can\'t understand \'{part}\'')
        field, op, value = m.groups()
        if allowed is not None and field not in allowed:
            raise bad_request(f'field label not supported: {field}' if not kind else
                              f'"{field}" is not a known field selector: only "{", ".join(sorted(allowed))}"')
        reqs.append((field, op, value))

    def pred(obj: dict[str, Any]) -> bool:
        for field, op, value in reqs:
            got = field_value(obj, field)
            if (got == value) != (op != "!="):
                return False
        return True

    return pred
