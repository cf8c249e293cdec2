"""Authorization as kube-apiserver does it: request attributes, RBAC rules, the default roles, aggregation, escalation.

- `request_attributes()` derives what is being asked from a request (``apiserver/pkg/endpoints/request/requestinfo.go``):
  the verb (get/list/watch/create/update/patch/delete/deletecollection, or the HTTP verb for a non-resource path),
  API group, resource, subresource, name and namespace.
- `Authorizer` answers it from the ``rbac.authorization.k8s.io/v1`` objects in the store (``plugin/pkg/auth/authorizer/
  rbac/rbac.go``): the union of the ClusterRoleBindings and the request namespace's RoleBindings that name the user,
  one of its groups or its ServiceAccount; there is no deny. ``system:masters`` is allowed everything before RBAC is
  asked, as kube-apiserver's privileged-group authorizer does.
- `forbidden()` is kube-apiserver's 403 (``responsewriters/errors.go``).
- `bootstrap()` writes the default ClusterRoles and ClusterRoleBindings kube-apiserver creates at start (those a
  workshop meets: cluster-admin, admin/edit/view and their ``system:aggregate-to-*`` parts, system:basic-user,
  system:discovery, system:public-info-viewer, system:auth-delegator, system:monitoring,
  system:service-account-issuer-discovery), as ``plugin/pkg/auth/authorizer/rbac/bootstrappolicy`` defines them.
- `Aggregator` is kube-controller-manager's clusterrole-aggregation controller: a ClusterRole with an
  ``aggregationRule`` gets the rules of every ClusterRole its selectors match.
- `confirm_no_escalation()` is the RBAC registry's escalation check: a Role, ClusterRole or binding may grant only
  what its author holds, unless the author may ``escalate`` (roles) or ``bind`` (the role a binding names).
- The ``validate_*`` functions are ``pkg/apis/rbac/validation`` with its messages.
"""

from __future__ import annotations

import copy
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from . import errors
from . import validation as v
from .authn import SA_PREFIX, User
from .errors import APIError
from .store import run_on_change

log = logging.getLogger("kperflab.lab.rbac")

GROUP = "rbac.authorization.k8s.io"
VERSION = "v1"
ROLES = f"{GROUP}/v1/roles"
ROLEBINDINGS = f"{GROUP}/v1/rolebindings"
CLUSTERROLES = f"{GROUP}/v1/clusterroles"
CLUSTERROLEBINDINGS = f"{GROUP}/v1/clusterrolebindings"
PRIVILEGED_GROUP = "system:masters"
Obj = dict[str, Any]


# -- request attributes -----------------------------------------------------------------------------

@dataclass
class Attributes:
    """authorizer.Attributes: who asks to do what."""

    user: User
    verb: str
    resource_request: bool = False
    path: str = ""
    namespace: str = ""
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""

    def describe(self) -> str:
        """kube-apiserver's ``User "u" cannot …`` (``responsewriters.forbiddenMessage``)."""
        if not self.resource_request:
            return f'User "{self.user.name}" cannot {self.verb} path "{self.path}"'
        res = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        where = f'in the namespace "{self.namespace}"' if self.namespace else "at the cluster scope"
        return f'User "{self.user.name}" cannot {self.verb} resource "{res}" in API group "{self.api_group}" {where}'


_METHOD_VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
_NAMESPACE_SUBRESOURCES = ("status", "finalize")
_PATH_SEGMENT_BAD = re.compile(r"[/%]")


def request_attributes(user: User, method: str, path: str, query: dict[str, str]) -> Attributes:
    """RequestInfoFactory.NewRequestInfo: the authorization attributes of an HTTP request."""
    attrs = Attributes(user, method.lower(), path=path)
    parts = [p for p in path.strip("/").split("/")] if path.strip("/") else []
    if len(parts) < 3 or parts[0] not in ("api", "apis"):
        return attrs
    prefix, parts = parts[0], parts[1:]
    if prefix == "apis":
        if len(parts) < 3:
            return attrs
        attrs.api_group, parts = parts[0], parts[1:]
    attrs.resource_request = True
    attrs.api_version, parts = parts[0], parts[1:]
    if parts[0] in ("proxy", "watch"):  # the deprecated /{verb}/… forms
        if len(parts) < 2:
            attrs.resource_request = False
            return attrs
        attrs.verb, parts = parts[0], parts[1:]
    else:
        attrs.verb = _METHOD_VERBS.get(method.upper(), "")
    if parts[0] == "namespaces":
        if len(parts) > 1:
            attrs.namespace = parts[1]
            if len(parts) > 2 and parts[2] not in _NAMESPACE_SUBRESOURCES:
                parts = parts[2:]
    if len(parts) >= 3 and attrs.verb != "proxy":
        attrs.subresource = parts[2]
    if len(parts) >= 2:
        attrs.name = parts[1]
    if parts:
        attrs.resource = parts[0]
    if not attrs.name and attrs.verb == "get":
        attrs.verb = "watch" if query.get("watch", "").lower() in ("1", "true") else "list"
        selector = query.get("fieldSelector", "")
        name = _exact_name(selector)
        if name and name not in (".", "..") and not _PATH_SEGMENT_BAD.search(name):
            attrs.name = name
    if not attrs.name and attrs.verb == "delete":
        attrs.verb = "deletecollection"
    return attrs


def _exact_name(selector: str) -> str:
    """The name a field selector requires exactly (``metadata.name=x`` or ``==``), if it has just that term for it."""
    for term in selector.split(","):
        for op in ("==", "="):
            key, sep, value = term.partition(op)
            if sep and key.strip() == "metadata.name" and not key.endswith("!"):
                return value.strip()
    return ""


def forbidden(attrs: Attributes, reason: str = "") -> APIError:
    """The 403 kube-apiserver answers a denied request with (``responsewriters.Forbidden`` + ``errors.NewForbidden``)."""
    msg = attrs.describe() + (f": {reason}" if reason else "")
    if not attrs.resource_request and not attrs.resource:
        return APIError(403, "Forbidden", f"forbidden: {msg}", details={})
    qualified = f"{attrs.resource}.{attrs.api_group}" if attrs.api_group else attrs.resource
    details: dict[str, Any] = {}
    if attrs.name:
        details["name"] = attrs.name
    if attrs.api_group:
        details["group"] = attrs.api_group
    if attrs.resource:
        details["kind"] = attrs.resource
    head = f'{qualified} "{attrs.name}"' if attrs.name else qualified
    return APIError(403, "Forbidden", f"{head} is forbidden: {msg}", details=details)


# -- rule evaluation --------------------------------------------------------------------------------

def _has(items: Any, value: str) -> bool:
    return isinstance(items, list) and (value in items or "*" in items)


def rule_allows(attrs: Attributes, rule: Obj) -> bool:
    """rbac.RuleAllows: verbs, API groups, resources (``res``, ``res/sub``, ``*``, ``*/sub``), resourceNames or
    nonResourceURLs (exact, ``*``, or a ``prefix*``)."""
    if not _has(rule.get("verbs"), attrs.verb):
        return False
    if attrs.resource_request:
        if not _has(rule.get("apiGroups"), attrs.api_group):
            return False
        combined = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
        resources = rule.get("resources") or []
        if not any(r == "*" or r == combined or (attrs.subresource and r == f"*/{attrs.subresource}") for r in resources):
            return False
        names = rule.get("resourceNames") or []
        return not names or attrs.name in names
    for url in rule.get("nonResourceURLs") or []:
        if url == "*" or url == attrs.path or (url.endswith("*") and attrs.path.startswith(url[:-1])):
            return True
    return False


def applies_to(subject: Obj, user: User, namespace: str) -> bool:
    """rbac.appliesToUser: a binding's subject names the user, one of its groups, or its ServiceAccount."""
    kind, name = subject.get("kind"), subject.get("name", "")
    if kind == "User":
        return user.name == name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or namespace
        return bool(ns) and user.name == f"{SA_PREFIX}{ns}:{name}"
    return False


def describe_subject(subject: Obj, binding_namespace: str) -> str:
    if subject.get("kind") == "ServiceAccount":
        return f'ServiceAccount "{subject.get("name", "")}/{subject.get("namespace") or binding_namespace}"'
    return f'{subject.get("kind", "")} "{subject.get("name", "")}"'


def _describe_binding(binding: Obj, subject: Obj) -> str:
    ref = binding.get("roleRef") or {}
    meta = binding["metadata"]
    if meta.get("namespace"):
        return (f'RoleBinding "{meta["name"]}/{meta["namespace"]}" of {ref.get("kind", "")} "{ref.get("name", "")}" to '
                f"{describe_subject(subject, meta['namespace'])}")
    return (f'ClusterRoleBinding "{meta["name"]}" of {ref.get("kind", "")} "{ref.get("name", "")}" to '
            f"{describe_subject(subject, '')}")


class Authorizer:
    """RBAC over the store's objects (and the privileged group before it)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def role_rules(self, ref: Obj, namespace: str) -> tuple[list[Obj], str]:
        """The rules a roleRef names, or an error as the RBAC registry's getters word it."""
        kind, name = ref.get("kind"), ref.get("name", "")
        if kind == "ClusterRole":
            role = self.store.try_get(CLUSTERROLES, "", name)
            if role is None:
                return [], f'clusterrole.{GROUP} "{name}" not found'
        elif kind == "Role" and namespace:
            role = self.store.try_get(ROLES, namespace, name)
            if role is None:
                return [], f'role.{GROUP} "{name}" not found'
        else:
            return [], f"unsupported role reference kind: {kind!r}"
        return [r for r in role.get("rules") or [] if isinstance(r, dict)], ""

    def visit(self, user: User, namespace: str) -> Iterator[tuple[str, Obj | None, str]]:
        """VisitRulesFor: (source description, rule or None, error) for every rule reaching the user in ``namespace``."""
        bindings, *_ = self.store.list(CLUSTERROLEBINDINGS)
        for b in bindings:
            subject = next((s for s in b.get("subjects") or [] if isinstance(s, dict) and applies_to(s, user, "")), None)
            if subject is None:
                continue
            rules, err = self.role_rules(b.get("roleRef") or {}, "")
            if err:
                yield "", None, err
            for rule in rules:
                yield _describe_binding(b, subject), rule, ""
        if not namespace:
            return
        bindings, *_ = self.store.list(ROLEBINDINGS, namespace)
        for b in bindings:
            subject = next((s for s in b.get("subjects") or [] if isinstance(s, dict) and applies_to(s, user, namespace)), None)
            if subject is None:
                continue
            rules, err = self.role_rules(b.get("roleRef") or {}, namespace)
            if err:
                yield "", None, err
            for rule in rules:
                yield _describe_binding(b, subject), rule, ""

    def authorize(self, attrs: Attributes) -> tuple[bool, str]:
        """(allowed, reason) as kube-apiserver's authorizer chain answers: ``RBAC: allowed by …`` when a rule allows;
        when none does, the rule-resolution errors (``RBAC: …``) or no reason at all."""
        if PRIVILEGED_GROUP in attrs.user.groups:
            return True, ""
        errs: list[str] = []
        for source, rule, err in self.visit(attrs.user, attrs.namespace):
            if err:
                errs.append(err)
            elif rule is not None and rule_allows(attrs, rule):
                return True, f"RBAC: allowed by {source}"
        if errs:
            return False, "RBAC: " + (errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]")
        return False, ""

    def rules_for(self, user: User, namespace: str) -> tuple[list[Obj], list[str]]:
        """RulesFor: every rule the user holds in ``namespace`` (cluster-wide ones included), and resolution errors."""
        rules, errs = [], []
        for _, rule, err in self.visit(user, namespace):
            if err:
                errs.append(err)
            elif rule is not None:
                rules.append(rule)
        return rules, errs

    def subject_rules(self, user: User, namespace: str) -> dict[str, Any]:
        """A SelfSubjectRulesReview's status (``RBACAuthorizer.RulesFor``)."""
        rules, errs = self.rules_for(user, namespace)
        resource_rules, non_resource_rules = [], []
        for r in rules:
            if r.get("resources"):
                rr = {"verbs": list(r.get("verbs") or []), "apiGroups": list(r.get("apiGroups") or []),
                      "resources": list(r["resources"])}
                if r.get("resourceNames"):
                    rr["resourceNames"] = list(r["resourceNames"])
                resource_rules.append(rr)
            if r.get("nonResourceURLs"):
                non_resource_rules.append({"verbs": list(r.get("verbs") or []), "nonResourceURLs": list(r["nonResourceURLs"])})
        status: dict[str, Any] = {"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": False}
        if errs:
            status["evaluationError"] = errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]"
        return status


# -- escalation -------------------------------------------------------------------------------------

def breakdown(rule: Obj) -> list[Obj]:
    """BreakdownRule: one verb × group × resource (× resourceName) or verb × URL per rule."""
    out: list[Obj] = []
    verbs = rule.get("verbs") or []
    for g in rule.get("apiGroups") or []:
        for r in rule.get("resources") or []:
            for verb in verbs:
                names = rule.get("resourceNames") or []
                if names:
                    out.extend({"apiGroups": [g], "resources": [r], "verbs": [verb], "resourceNames": [n]} for n in names)
                else:
                    out.append({"apiGroups": [g], "resources": [r], "verbs": [verb]})
    for url in rule.get("nonResourceURLs") or []:
        out.extend({"nonResourceURLs": [url], "verbs": [verb]} for verb in verbs)
    return out


def _covers(owner: Obj, wanted: Obj) -> bool:
    """ruleCovers: the owner's rule holds every part of the (broken down) wanted rule."""
    def has_all(owner_items: list[str], wanted_items: list[str]) -> bool:
        return "*" in owner_items or all(w in owner_items for w in wanted_items)

    if not has_all(owner.get("verbs") or [], wanted.get("verbs") or []):
        return False
    if wanted.get("nonResourceURLs"):
        urls = owner.get("nonResourceURLs") or []
        return all(any(u == "*" or u == w or (u.endswith("*") and w.startswith(u[:-1])) for u in urls)
                   for w in wanted["nonResourceURLs"])
    if not has_all(owner.get("apiGroups") or [], wanted.get("apiGroups") or []):
        return False
    owner_res = owner.get("resources") or []
    for w in wanted.get("resources") or []:
        sub = w.split("/", 1)[1] if "/" in w else ""
        if not ("*" in owner_res or w in owner_res or (sub and f"*/{sub}" in owner_res)):
            return False
    owner_names = owner.get("resourceNames") or []
    return not owner_names or all(n in owner_names for n in wanted.get("resourceNames") or [])


def missing_rules(owner_rules: list[Obj], wanted: list[Obj]) -> list[Obj]:
    """Covers: the broken-down wanted rules no owner rule covers."""
    return [s for rule in wanted for s in breakdown(rule) if not any(_covers(o, s) for o in owner_rules)]


def compact_string(rule: Obj) -> str:
    """rbacv1helpers.CompactString: ``{APIGroups:[""], Resources:["pods"], Verbs:["get"]}``."""
    def q(items: list[str]) -> str:
        return "[" + " ".join(v.go_value(i) for i in items) + "]"

    parts = [f"{label}:{q(rule[key])}" for label, key in (("APIGroups", "apiGroups"), ("Resources", "resources"),
                                                          ("NonResourceURLs", "nonResourceURLs"),
                                                          ("ResourceNames", "resourceNames"), ("Verbs", "verbs"))
             if rule.get(key)]
    return "{" + ", ".join(parts) + "}"


def compact_rules(rules: list[Obj]) -> list[Obj]:
    """CompactRules: simple rules (one group, one resource, at most one name) with the same target merge their verbs."""
    out: list[Obj] = []
    simple: dict[tuple[str, str, str], Obj] = {}
    for r in rules:
        if (not r.get("nonResourceURLs") and len(r.get("apiGroups") or []) == 1 and len(r.get("resources") or []) == 1
                and len(r.get("resourceNames") or []) <= 1):
            key = (r["apiGroups"][0], r["resources"][0], (r.get("resourceNames") or [""])[0])
            if key in simple:
                simple[key]["verbs"] += [x for x in r.get("verbs") or [] if x not in simple[key]["verbs"]]
            else:
                simple[key] = copy.deepcopy(r)
        else:
            out.append(r)
    return out + list(simple.values())


def confirm_no_escalation(authz: Authorizer, user: User, namespace: str, rules: list[Obj]) -> str:
    """"" when ``user`` holds every rule in ``namespace``; else kube-apiserver's explanation (ConfirmNoEscalation)."""
    if PRIVILEGED_GROUP in user.groups:
        return ""
    owner, errs = authz.rules_for(user, namespace)
    missing = missing_rules(owner, rules)
    if not missing:
        return ""
    descriptions = sorted({compact_string(r) for r in compact_rules(missing)})
    groups = "[" + " ".join(v.go_value(g) for g in user.groups) + "]"
    msg = (f'user "{user.name}" (groups={groups}) is attempting to grant RBAC permissions not currently held:\n'
           + "\n".join(descriptions))
    if errs:
        msg += "; resolution errors: [" + " ".join(errs) + "]"
    return msg


def check_escalation(authz: Authorizer, user: User | None, kind: str, obj: Obj) -> None:
    """The RBAC registry's create/update guard for the four kinds: 403 when the object would grant what ``user``
    lacks (roles: unless it may ``escalate``; bindings: unless it may ``bind`` the role it names)."""
    if user is None or PRIVILEGED_GROUP in user.groups or kind not in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"):
        return
    check = {"Role": validate_role, "ClusterRole": validate_cluster_role, "RoleBinding": validate_role_binding,
             "ClusterRoleBinding": validate_cluster_role_binding}[kind]
    if kind in ("RoleBinding", "ClusterRoleBinding"):
        obj = copy.deepcopy(obj)
        default_binding(obj)  # as the create path will, before validating
    if check(obj):
        return  # not a valid object: its validation answers (422) before anything could be granted
    meta = obj.get("metadata") or {}
    namespace, name = meta.get("namespace", "") if kind in ("Role", "RoleBinding") else "", meta.get("name", "")
    plural = kind.lower() + "s"
    if kind in ("Role", "ClusterRole"):
        role_plural = plural
        if authz.authorize(Attributes(user, "escalate", True, namespace=namespace, api_group=GROUP,
                                      api_version=VERSION, resource=role_plural, name=name))[0]:
            return
        if kind == "ClusterRole" and obj.get("aggregationRule"):
            why = "must have cluster-admin privileges to use the aggregationRule"
        else:
            why = confirm_no_escalation(authz, user, namespace, [r for r in obj.get("rules") or [] if isinstance(r, dict)])
    else:
        ref = obj.get("roleRef") or {}
        role_plural = "clusterroles" if ref.get("kind") == "ClusterRole" else "roles"
        if authz.authorize(Attributes(user, "bind", True, namespace=namespace, api_group=GROUP, api_version=VERSION,
                                      resource=role_plural, name=ref.get("name", "")))[0]:
            return
        rules, err = authz.role_rules(ref, namespace)
        if err:  # the registry's getter: plural resource
            raise errors.not_found(role_plural, ref.get("name", ""), GROUP)
        why = confirm_no_escalation(authz, user, namespace, rules)
    if why:
        raise APIError(403, "Forbidden", f'{plural}.{GROUP} "{name}" is forbidden: {why}',
                       details={"name": name, "group": GROUP, "kind": plural})


# -- validation (pkg/apis/rbac/validation) ----------------------------------------------------------

def _rbac_meta(obj: Obj, namespaced: bool) -> list[dict[str, str]]:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return [v.cause("metadata", "Required value", "")]
    out: list[dict[str, str]] = []
    name = meta.get("name")
    if not name:
        out.append(v.cause("metadata.name", "Required value", "name or generateName is required"))
    elif not isinstance(name, str):
        out.append(v.invalid_value("metadata.name", name, "must be a string"))
    else:  # ValidateRBACName: path.IsValidPathSegmentName
        if name in (".", ".."):
            out.append(v.invalid_value("metadata.name", name, f"may not be '{name}'"))
        for ch in ("/", "%"):
            if ch in name:
                out.append(v.invalid_value("metadata.name", name, f"may not contain '{ch}'"))
    rest = {k: val for k, val in meta.items() if k != "name"}
    out += [c for c in v.metadata({**rest, "name": "x"}, namespaced=namespaced) if c["field"] != "metadata.name"]
    return out


def _strings(value: Any) -> bool:
    return value is None or (isinstance(value, list) and all(isinstance(x, str) for x in value))


def _rules(obj: Obj, namespaced: bool) -> list[dict[str, str]]:
    rules = obj.get("rules")
    if rules is None:
        return []
    if not isinstance(rules, list):
        return [v.invalid_value("rules", "…", "must be a list of PolicyRules")]
    out: list[dict[str, str]] = []
    for i, rule in enumerate(rules):
        f = f"rules[{i}]"
        if not isinstance(rule, dict):
            out.append(v.invalid_value(f, "…", "must be a PolicyRule object"))
            continue
        shape = [v.invalid_value(f"{f}.{key}", "…", "must be a list of strings")
                 for key in ("verbs", "apiGroups", "resources", "resourceNames", "nonResourceURLs") if not _strings(rule.get(key))]
        if shape:
            out += shape
            continue
        if not rule.get("verbs"):
            out.append(v.cause(f"{f}.verbs", "Required value", "verbs must contain at least one value"))
        urls = rule.get("nonResourceURLs") or []
        if urls:
            if namespaced:
                out.append(v.cause(f"{f}.nonResourceURLs", "Invalid value",
                                   f"{v.go_value(urls)}: namespaced rules cannot apply to non-resource URLs"))
            if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
                out.append(v.cause(f"{f}.nonResourceURLs", "Invalid value",
                                   f"{v.go_value(urls)}: rules cannot apply to both regular resources and non-resource URLs"))
            continue
        if not rule.get("apiGroups"):
            out.append(v.cause(f"{f}.apiGroups", "Required value", "resource rules must supply at least one api group"))
        if not rule.get("resources"):
            out.append(v.cause(f"{f}.resources", "Required value", "resource rules must supply at least one resource"))
    return out


def validate_role(obj: Obj) -> list[dict[str, str]]:
    return _rbac_meta(obj, True) + _rules(obj, True)


def validate_cluster_role(obj: Obj) -> list[dict[str, str]]:
    out = _rbac_meta(obj, False) + _rules(obj, False)
    agg = obj.get("aggregationRule")
    if agg is not None:
        selectors = agg.get("clusterRoleSelectors") if isinstance(agg, dict) else None
        if not selectors:
            out.append(v.cause("aggregationRule.clusterRoleSelectors", "Required value",
                               "at least one clusterRoleSelector required if aggregationRule is non-nil"))
        elif not isinstance(selectors, list) or not all(isinstance(s, dict) for s in selectors):
            out.append(v.invalid_value("aggregationRule.clusterRoleSelectors", "…", "must be a list of label selectors"))
        else:
            for i, sel in enumerate(selectors):
                out += _label_selector(f"aggregationRule.clusterRoleSelectors[{i}]", sel)
    return out


def _label_selector(field: str, sel: Obj) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    labels = sel.get("matchLabels") or {}
    if not isinstance(labels, dict) or not all(isinstance(x, str) for x in labels.values()):
        return [v.invalid_value(f"{field}.matchLabels", "…", "must be a map of strings")]
    out += v._labels(f"{field}.matchLabels", labels)
    for j, expr in enumerate(sel.get("matchExpressions") or []):
        f = f"{field}.matchExpressions[{j}]"
        if not isinstance(expr, dict):
            out.append(v.invalid_value(f, "…", "must be a label selector requirement"))
            continue
        op, values = expr.get("operator"), expr.get("values") or []
        if op in ("In", "NotIn") and not values:
            out.append(v.cause(f"{f}.values", "Required value", "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist") and values:
            out.append(v.cause(f"{f}.values", "Forbidden", "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
        elif op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            out.append(v.not_supported(f"{f}.operator", op or "", ("In", "NotIn", "Exists", "DoesNotExist")))
        out += v.qualified_name(f"{f}.key", str(expr.get("key", "")))
    return out


def default_binding(obj: Obj) -> None:
    """SetDefaults_RoleBinding/ClusterRoleBinding and SetDefaults_Subject (rbac/v1)."""
    ref = obj.get("roleRef")
    if isinstance(ref, dict) and not ref.get("apiGroup"):
        ref["apiGroup"] = GROUP
    subjects = obj.get("subjects")
    for s in subjects if isinstance(subjects, list) else []:
        if isinstance(s, dict) and not s.get("apiGroup") and s.get("kind") in ("User", "Group"):
            s["apiGroup"] = GROUP


def _binding(obj: Obj, namespaced: bool) -> list[dict[str, str]]:
    out = _rbac_meta(obj, namespaced)
    ref = obj.get("roleRef")
    if not isinstance(ref, dict):
        ref = {}
    if ref.get("apiGroup") != GROUP:
        out.append(v.not_supported("roleRef.apiGroup", ref.get("apiGroup", ""), (GROUP,)))
    kinds = ("Role", "ClusterRole") if namespaced else ("ClusterRole",)
    if ref.get("kind") not in kinds:
        out.append(v.not_supported("roleRef.kind", ref.get("kind", ""), kinds))
    rname = ref.get("name")
    if not rname:
        out.append(v.cause("roleRef.name", "Required value", ""))
    elif isinstance(rname, str):
        if rname in (".", ".."):
            out.append(v.invalid_value("roleRef.name", rname, f"may not be '{rname}'"))
        for ch in ("/", "%"):
            if ch in rname:
                out.append(v.invalid_value("roleRef.name", rname, f"may not contain '{ch}'"))
    subjects = obj.get("subjects") or []
    if not isinstance(subjects, list):
        return out + [v.invalid_value("subjects", "…", "must be a list of subjects")]
    for i, s in enumerate(subjects):
        f = f"subjects[{i}]"
        if not isinstance(s, dict):
            out.append(v.invalid_value(f, "…", "must be a subject object"))
            continue
        name, kind, group = s.get("name") or "", s.get("kind") or "", s.get("apiGroup") or ""
        if not name:
            out.append(v.cause(f"{f}.name", "Required value", ""))
        if kind == "ServiceAccount":
            if name:
                out += v.dns_subdomain(f"{f}.name", name)
            if group:
                out.append(v.not_supported(f"{f}.apiGroup", group, ("",)))
            if not namespaced and not s.get("namespace"):
                out.append(v.cause(f"{f}.namespace", "Required value", ""))
        elif kind in ("User", "Group"):
            if group != GROUP:
                out.append(v.not_supported(f"{f}.apiGroup", group, (GROUP,)))
        else:
            out.append(v.not_supported(f"{f}.kind", kind, ("ServiceAccount", "User", "Group")))
    return out


def validate_role_binding(obj: Obj) -> list[dict[str, str]]:
    return _binding(obj, True)


def validate_cluster_role_binding(obj: Obj) -> list[dict[str, str]]:
    return _binding(obj, False)


def validate_binding_update(old: Obj, new: Obj) -> list[dict[str, str]]:
    """ValidateRoleBindingUpdate: roleRef is immutable (then the object's own validation)."""
    namespaced = bool(new.get("metadata", {}).get("namespace"))
    out = _binding(new, namespaced)
    if (old.get("roleRef") or {}) != (new.get("roleRef") or {}):
        ref = new.get("roleRef") or {}
        shown = (f'rbac.RoleRef{{APIGroup:{v.go_value(ref.get("apiGroup", ""))}, Kind:{v.go_value(ref.get("kind", ""))}, '
                 f'Name:{v.go_value(ref.get("name", ""))}}}')
        out.append(v.cause("roleRef", "Invalid value", f"{shown}: cannot change roleRef"))
    return out


# -- bootstrap policy (plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go) --------------------

READ = ["get", "list", "watch"]
WRITE = ["create", "delete", "deletecollection", "patch", "update"]
ALL = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def _r(groups: list[str], resources: list[str], verbs: list[str]) -> Obj:
    return {"apiGroups": groups, "resources": resources, "verbs": verbs}


def _u(urls: list[str], verbs: list[str]) -> Obj:
    return {"nonResourceURLs": urls, "verbs": verbs}


def _cluster_role(name: str, rules: list[Obj] | None, labels: dict[str, str] | None = None,
                  aggregate: str = "") -> Obj:
    obj: Obj = {"apiVersion": f"{GROUP}/v1", "kind": "ClusterRole", "metadata": {
        "name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults", **(labels or {})},
        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}}}
    if aggregate:
        obj["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": {f"{GROUP}/aggregate-to-{aggregate}": "true"}}]}
        obj["rules"] = None
    else:
        obj["rules"] = rules
    return obj


def _to(which: str) -> dict[str, str]:
    return {f"{GROUP}/aggregate-to-{which}": "true"}


def bootstrap_cluster_roles() -> list[Obj]:
    """The default ClusterRoles a workshop meets, as kube-apiserver 1.32 writes them."""
    return [
        _cluster_role("cluster-admin", [_r(["*"], ["*"], ["*"]), _u(["*"], ["*"])]),
        _cluster_role("admin", None, aggregate="admin"),
        _cluster_role("edit", None, _to("admin"), aggregate="edit"),
        _cluster_role("view", None, _to("edit"), aggregate="view"),
        _cluster_role("system:aggregate-to-admin", [
            _r(["authorization.k8s.io"], ["localsubjectaccessreviews"], ["create"]),
            _r([GROUP], ["rolebindings", "roles"], ALL)], _to("admin")),
        _cluster_role("system:aggregate-to-edit", [
            _r([""], ["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy"], READ),
            _r([""], ["serviceaccounts"], ["impersonate"]),
            _r([""], ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"], WRITE),
            _r([""], ["pods/eviction"], ["create"]),
            _r([""], ["configmaps", "events", "persistentvolumeclaims", "replicationcontrollers",
                      "replicationcontrollers/scale", "secrets", "serviceaccounts", "services", "services/proxy"], WRITE),
            _r([""], ["serviceaccounts/token"], ["create"]),
            _r(["apps"], ["daemonsets", "deployments", "deployments/rollback", "deployments/scale", "replicasets",
                          "replicasets/scale", "statefulsets", "statefulsets/scale"], WRITE),
            _r(["autoscaling"], ["horizontalpodautoscalers"], WRITE),
            _r(["batch"], ["cronjobs", "jobs"], WRITE),
            _r(["extensions"], ["daemonsets", "deployments", "deployments/rollback", "deployments/scale", "ingresses",
                                "networkpolicies", "replicasets", "replicasets/scale", "replicationcontrollers/scale"], WRITE),
            _r(["policy"], ["poddisruptionbudgets"], WRITE),
            _r(["networking.k8s.io"], ["ingresses", "networkpolicies"], WRITE),
            _r(["coordination.k8s.io"], ["leases"], ALL)], _to("edit")),
        _cluster_role("system:aggregate-to-view", [
            _r([""], ["configmaps", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status", "pods",
                      "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services",
                      "services/status"], READ),
            _r([""], ["bindings", "events", "limitranges", "namespaces/status", "pods/log", "pods/status",
                      "replicationcontrollers/status", "resourcequotas", "resourcequotas/status"], READ),
            _r([""], ["namespaces"], READ),
            _r(["discovery.k8s.io"], ["endpointslices"], READ),
            _r(["apps"], ["controllerrevisions", "daemonsets", "daemonsets/status", "deployments", "deployments/scale",
                          "deployments/status", "replicasets", "replicasets/scale", "replicasets/status", "statefulsets",
                          "statefulsets/scale", "statefulsets/status"], READ),
            _r(["autoscaling"], ["horizontalpodautoscalers", "horizontalpodautoscalers/status"], READ),
            _r(["batch"], ["cronjobs", "cronjobs/status", "jobs", "jobs/status"], READ),
            _r(["extensions"], ["daemonsets", "daemonsets/status", "deployments", "deployments/scale", "deployments/status",
                                "ingresses", "ingresses/status", "networkpolicies", "replicasets", "replicasets/scale",
                                "replicasets/status", "replicationcontrollers/scale"], READ),
            _r(["policy"], ["poddisruptionbudgets", "poddisruptionbudgets/status"], READ),
            _r(["networking.k8s.io"], ["ingresses", "ingresses/status", "networkpolicies"], READ)], _to("view")),
        _cluster_role("system:auth-delegator", [
            _r(["authentication.k8s.io"], ["tokenreviews"], ["create"]),
            _r(["authorization.k8s.io"], ["subjectaccessreviews"], ["create"])]),
        _cluster_role("system:basic-user", [
            _r(["authorization.k8s.io"], ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], ["create"]),
            _r(["authentication.k8s.io"], ["selfsubjectreviews"], ["create"])]),
        _cluster_role("system:discovery", [_u(["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi",
                                               "/openapi/*", "/readyz", "/version", "/version/"], ["get"])]),
        _cluster_role("system:monitoring", [_u(["/healthz", "/healthz/*", "/livez", "/livez/*", "/metrics", "/metrics/slis",
                                                "/readyz", "/readyz/*"], ["get"])]),
        _cluster_role("system:public-info-viewer", [_u(["/healthz", "/livez", "/readyz", "/version", "/version/"], ["get"])]),
        _cluster_role("system:service-account-issuer-discovery",
                      [_u(["/.well-known/openid-configuration", "/openid/v1/jwks"], ["get"])]),
    ]


def _cluster_binding(name: str, role: str, groups: list[str]) -> Obj:
    return {"apiVersion": f"{GROUP}/v1", "kind": "ClusterRoleBinding", "metadata": {
        "name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": GROUP, "kind": "Group", "name": g} for g in groups]}


def bootstrap_cluster_role_bindings() -> list[Obj]:
    return [
        _cluster_binding("cluster-admin", "cluster-admin", ["system:masters"]),
        _cluster_binding("system:basic-user", "system:basic-user", ["system:authenticated"]),
        _cluster_binding("system:discovery", "system:discovery", ["system:authenticated"]),
        _cluster_binding("system:monitoring", "system:monitoring", ["system:monitoring"]),
        _cluster_binding("system:public-info-viewer", "system:public-info-viewer",
                         ["system:authenticated", "system:unauthenticated"]),
        _cluster_binding("system:service-account-issuer-discovery", "system:service-account-issuer-discovery",
                         ["system:serviceaccounts"]),
    ]


def bootstrap(store: Any) -> None:
    """Write the default roles and bindings that are missing (kube-apiserver's storage_rbac post-start hook), then
    aggregate once so ``admin``/``edit``/``view`` hold rules from the start."""
    for role in bootstrap_cluster_roles():
        if store.try_get(CLUSTERROLES, "", role["metadata"]["name"]) is None:
            store.create(CLUSTERROLES, role)
    for binding in bootstrap_cluster_role_bindings():
        if store.try_get(CLUSTERROLEBINDINGS, "", binding["metadata"]["name"]) is None:
            store.create(CLUSTERROLEBINDINGS, binding)
    Aggregator(store).reconcile()


# -- aggregation (pkg/controller/clusterroleaggregation) --------------------------------------------

def selector_matches(sel: Obj, labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector against labels (an empty selector matches everything)."""
    if not isinstance(sel, dict):
        return False
    for k, val in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != val:
            return False
    for expr in sel.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


class Aggregator:
    """kube-controller-manager's clusterrole-aggregation controller: rules of an aggregated ClusterRole = the rules of
    the ClusterRoles its selectors match, in name order, without duplicates."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._seen: tuple[tuple[str, str], ...] = ()

    def reconcile(self) -> None:
        """Aggregate until nothing changes (admin aggregates edit, which aggregates view: a few passes)."""
        for _ in range(10):
            roles, *_ = self.store.list(CLUSTERROLES)
            stamp = tuple((r["metadata"]["name"], r["metadata"].get("resourceVersion", "")) for r in roles)
            if stamp == self._seen:
                return
            self._pass(roles)
            self._seen = stamp

    def _pass(self, roles: list[Obj]) -> None:
        for role in roles:
            agg = role.get("aggregationRule")
            if not isinstance(agg, dict) or not agg.get("clusterRoleSelectors"):
                continue
            rules: list[Obj] = []
            for other in roles:
                if other["metadata"]["name"] == role["metadata"]["name"]:
                    continue
                labels = other["metadata"].get("labels") or {}
                if not any(selector_matches(s, labels) for s in agg["clusterRoleSelectors"]):
                    continue
                rules += [r for r in other.get("rules") or [] if r not in rules]
            if (role.get("rules") or []) != rules:
                role["rules"] = rules
                try:
                    self.store.update(CLUSTERROLES, role, kind="clusterroles", group=GROUP)
                except APIError:  # changed meanwhile: the next pass sees it
                    pass

    def run(self, stop: threading.Event) -> None:
        run_on_change(self.store, stop, self.reconcile, "clusterrole aggregation")
