"""The lab's API server: Kubernetes HTTP semantics over the store (discovery, CRUD, watch, tables, Status errors).

`APIServer.handle()` turns one request into a `Response` without touching sockets, so most of it is tested
directly; `serve()` puts it behind HTTPS on 127.0.0.1 with a bearer token.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

from . import errors, patch, protobuf, rbac, strict, tables
from . import validation as val
from .authn import ADMIN, ANONYMOUS, SA_PREFIX, Authenticator, User
from .errors import APIError
from .resources import BY_PATH, ResourceType, api_resource_list, groups
from .selectors import parse_field_selector, parse_label_selector
from .services import DEFAULT_NODE_PORT_RANGE, DEFAULT_SERVICE_CIDR, ServiceRegistry, default_on_read
from .store import Store, clone

log = logging.getLogger("kperflab.lab.apiserver")

MAX_BODY = 3 * 1024 * 1024  # kube-apiserver's default request body limit
STREAM_PATH = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)/(?P<sub>exec|attach|portforward)/?$")
PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
# what a request without credentials may reach (as ``system:anonymous``, then RBAC: system:public-info-viewer)
ANONYMOUS_PATHS = ("/healthz", "/livez", "/readyz", "/version")
READ_MEDIA = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")
# kinds whose DELETE answers with the deleted object rather than a Status (their stores' ReturnDeletedObject: Pod and
# Namespace answer with the object anyway, being deleted gracefully)
RETURNS_DELETED_OBJECT = ("Service", "ServiceAccount", "StorageClass", "PersistentVolume", "PersistentVolumeClaim")


@dataclass
class Response:
    code: int = 200
    body: Any = None  # dict → JSON/YAML, str/bytes → as is
    content_type: str = "application/json"
    stream: Iterator[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # the body's compact JSON + "\n" when the server has it cheaper than encoding ``body`` again (objects the store
    # already encoded once); the HTTP layer sends it instead of ``json.dumps(body)``, byte for byte the same
    raw: Callable[[], bytes] | None = None


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""
    user: User | None = None  # set by authentication
    warnings: list[str] = field(default_factory=list)  # sent back as `Warning: 299 - "…"` (strict.warning_header)
    # the caller only encodes the answer and never changes it (the HTTP layer): reads may answer with the store's own
    # dicts (read only) instead of deep copies. ``handle()`` called directly (tests, in-process) gets copies.
    shared: bool = False

    def q(self, name: str, default: str = "") -> str:
        return self.query.get(name, default)

    def flag(self, name: str) -> bool:
        return self.query.get(name, "").lower() in ("1", "true")


def _now() -> float:
    return time.time()


class APIServer:
    """Routes Kubernetes API requests to the store and to the lab's parts (kubelet logs, node proxy)."""

    def __init__(self, store: Store, token: str | Authenticator, *, version: dict[str, str],
                 logs: Callable[..., Iterator[bytes]] | None = None,
                 node_proxy: Callable[[str, str, dict[str, str]], Response] | None = None,
                 extra_groups: dict[str, Any] | None = None,
                 ready: Callable[[], bool] = lambda: True,
                 service_cidr: str = DEFAULT_SERVICE_CIDR, node_port_range: str = DEFAULT_NODE_PORT_RANGE) -> None:
        self.store = store
        self.services = ServiceRegistry(store, service_cidr, node_port_range)  # ClusterIPs and node ports
        self.authn = token if isinstance(token, Authenticator) else Authenticator(token)
        self.version = version
        self.logs = logs
        self.node_proxy = node_proxy
        self.proxy: Any = None  # apiproxy.APIProxy: nodes/services/pods …/proxy, wired by the lab
        self.extra_groups = extra_groups or {}  # group → object with .versions, .handle(req, version, rest)
        self.streaming: Any = None  # the kubelet: exec_session(pod, options), attach_session(…), dial(pod, port)
        self.ready = ready
        self.address = "127.0.0.1:0"
        self.admission: Any = None  # admission.ServiceAccountAdmission for pod creation, wired by the lab
        self.tokens: Any = None  # satokens.TokenIssuer: TokenRequest (serviceaccounts/token), wired by the lab
        self.authz = rbac.Authorizer(store)  # RBAC for every user outside system:masters
        # compact JSON of stored objects by (resource, resourceVersion): a stored dict is never changed in place and a
        # resourceVersion names one version of one object, so an entry stays right; bounded by clearing
        self._encoded: dict[tuple[str, str], bytes] = {}

    # -- entry -----------------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        try:
            resp = self._handle(req)
        except APIError as exc:
            resp = Response(exc.code, exc.status())
        except Exception:  # noqa: BLE001 - a bug must still answer with a Status, never drop the connection
            log.exception("internal error on %s %s", req.method, req.path)
            return Response(500, APIError(500, "InternalError", "an error on the server has prevented the request from succeeding").status())
        if req.warnings:
            from .strict import warning_header

            resp.headers["Warning"] = warning_header(req.warnings)
        return resp

    def _authenticate(self, req: Request) -> bool | None:
        """Sets ``req.user``; None without credentials, False for credentials no one has (an unknown, expired or
        revoked token). A request without credentials is ``system:anonymous`` for the health and version paths only
        (as kube-apiserver with anonymous auth limited to those endpoints); elsewhere it is 401."""
        auth = req.headers.get("authorization", "")
        if not auth:
            path = req.path.rstrip("/") or "/"
            if path in ANONYMOUS_PATHS or path.startswith(tuple(p + "/" for p in ANONYMOUS_PATHS)):
                req.user = ANONYMOUS
            return None
        if not auth.lower().startswith("bearer "):
            return False
        req.user = self.authn.user(auth[7:].strip())
        return req.user is not None

    def authorize(self, user: User, method: str, path: str, query: dict[str, str]) -> rbac.Attributes:
        """kube-apiserver's authorization filter: the request's attributes (RequestInfo), allowed or 403."""
        attrs = rbac.request_attributes(user, method, unquote(path) or "/", query)
        allowed, reason = self.authz.authorize(attrs)
        if not allowed:
            raise rbac.forbidden(attrs, reason)
        if attrs.subresource in ("exec", "attach", "portforward") and attrs.verb == "get" and attrs.resource == "pods":
            # a websocket upgrade (GET) needs create as well (AuthorizePodWebsocketUpgradeCreatePermission)
            attrs.verb = "create"
            allowed, reason = self.authz.authorize(attrs)
            if not allowed:
                raise rbac.forbidden(attrs, reason)
        return attrs

    def _impersonate(self, req: Request) -> None:
        """``Impersonate-User/-Group/-Uid/-Extra-*`` (``kubectl --as``, ``--as-group``): the requester needs
        ``impersonate`` on each (users, or the ServiceAccount; groups; uids and userextras in authentication.k8s.io),
        then the request is the impersonated user's (``apiserver/pkg/endpoints/filters/impersonation.go``). One
        ``Impersonate-Group`` value is read (the lab's request headers hold one value per name)."""
        h = req.headers
        name, group, uid = h.get("impersonate-user", ""), h.get("impersonate-group", ""), h.get("impersonate-uid", "")
        extras = {k[len("impersonate-extra-"):]: v for k, v in h.items() if k.startswith("impersonate-extra-")}
        if not name and (group or uid or extras):
            raise errors.bad_request("requested impersonation of groups, a uid or extra without impersonating a user")
        checks: list[rbac.Attributes] = []
        actor = req.user
        assert actor is not None
        sa = name[len(SA_PREFIX):].split(":", 1) if name.startswith(SA_PREFIX) else []
        if len(sa) == 2:
            checks.append(rbac.Attributes(actor, "impersonate", True, namespace=sa[0], resource="serviceaccounts", name=sa[1]))
        elif name:
            checks.append(rbac.Attributes(actor, "impersonate", True, resource="users", name=name))
        if group:
            checks.append(rbac.Attributes(actor, "impersonate", True, resource="groups", name=group))
        if uid:
            checks.append(rbac.Attributes(actor, "impersonate", True, api_group="authentication.k8s.io", resource="uids", name=uid))
        for key, value in extras.items():
            checks.append(rbac.Attributes(actor, "impersonate", True, api_group="authentication.k8s.io",
                                          resource="userextras", subresource=key, name=value))
        for attrs in checks:
            allowed, reason = self.authz.authorize(attrs)
            if not allowed:
                raise rbac.forbidden(attrs, reason)
        groups = [group] if group else []
        if len(sa) == 2 and not group:
            groups = ["system:serviceaccounts", f"system:serviceaccounts:{sa[0]}"]
        if name == ANONYMOUS.name:
            groups += [g for g in ("system:unauthenticated",) if g not in groups]
        elif "system:authenticated" not in groups:
            groups.append("system:authenticated")
        req.user = User(name, uid, tuple(groups), tuple((k, (v,)) for k, v in sorted(extras.items())))

    def _handle(self, req: Request) -> Response:
        path = req.path.rstrip("/") or "/"
        authed = self._authenticate(req)
        if authed is False:
            raise errors.unauthorized()
        if req.user is None:
            raise errors.unauthorized()
        if any(k.startswith("impersonate-") for k in req.headers):
            self._impersonate(req)
        self.authorize(req.user, req.method, req.path, req.query)
        if path in ("/healthz", "/livez", "/readyz") or path.startswith(("/healthz/", "/livez/", "/readyz/")):
            ok = self.ready() if path.startswith("/readyz") else True
            text = "ok" if ok else "[-]lab-ready failed: reason withheld\nreadyz check failed"
            if req.flag("verbose"):
                text = f"[+]ping ok\n[{'+' if ok else '-'}]lab-ready {'ok' if ok else 'failed'}\n{path.strip('/')} check {'passed' if ok else 'failed'}\n"
            return Response(200 if ok else 500, text, "text/plain; charset=utf-8")
        if path == "/version":
            return Response(200, self.version)
        if not authed:
            raise errors.unauthorized()
        if req.method == "GET" and path == "/api":
            return Response(200, {"kind": "APIVersions", "versions": ["v1"],
                                  "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": self.address}]})
        if req.method == "GET" and path == "/apis":
            return Response(200, self._group_list())
        if path.startswith("/openapi"):
            return self._openapi(path, req)
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if parts[0] == "api" and len(parts) >= 2:
            if parts[1] != "v1":
                raise _no_resource()
            return self._group_version(req, "", "v1", parts[2:])
        if parts[0] == "apis" and len(parts) >= 2:
            group = parts[1]
            if group in self.extra_groups:
                return self.extra_groups[group].handle(req, parts[2:])
            if group not in groups():
                raise _no_resource()
            if len(parts) == 2:
                return Response(200, self._group(group))
            return self._group_version(req, group, parts[2], parts[3:])
        raise _no_resource()

    # -- discovery -------------------------------------------------------------------------------
    def _group(self, group: str) -> dict[str, Any]:
        versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in groups()[group]]
        return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": versions, "preferredVersion": versions[0]}

    def _group_list(self) -> dict[str, Any]:
        out = [self._group(g) for g in groups() if g]
        for name, ext in self.extra_groups.items():
            versions = [{"groupVersion": f"{name}/{v}", "version": v} for v in ext.versions]
            out.append({"name": name, "versions": versions, "preferredVersion": versions[0]})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": out}

    def _openapi(self, path: str, req: Request) -> Response:
        """`/openapi/v2`, `/openapi/v3` and `/openapi/v3/<group/version>` as kube-openapi serves them (`openapi`):
        upstream's schemas for the kinds the lab serves, ETags, `?hash=` redirects."""
        spec = self.__dict__.get("_openapi_spec")
        if spec is None:
            from .openapi import OpenAPI

            spec = self.__dict__.setdefault("_openapi_spec", OpenAPI(self.version["gitVersion"]))
        answer = spec.answer(path, req.query, req.headers)
        if answer is None:
            raise _no_resource()
        code, body, headers = answer
        if code == 406:  # kube-openapi answers an empty 406; the lab answers every 4xx with a Status
            from .openapi import V2_PROTOBUF

            offered = "application/json" + (", " + ", ".join(V2_PROTOBUF) if path == "/openapi/v2" else "")
            raise APIError(406, "NotAcceptable", f"only the following media types are accepted: {offered}")
        return Response(code, body, headers.get("Content-Type", "application/json"), headers=headers)

    # -- resources -------------------------------------------------------------------------------
    def _group_version(self, req: Request, group: str, version: str, rest: list[str]) -> Response:
        if version not in groups().get(group, []):
            raise _no_resource()
        if not rest:
            if req.method != "GET":
                raise errors.method_not_allowed()
            return Response(200, api_resource_list(group, version))
        namespace = ""
        if rest[0] == "namespaces" and len(rest) >= 3 and (group, version, rest[2]) in BY_PATH:
            namespace, rest = rest[1], rest[2:]
            rtype = BY_PATH[(group, version, rest[0])]
            if not rtype.namespaced:
                raise _no_resource()
        else:
            rtype = BY_PATH.get((group, version, rest[0]))
            if rtype is None:
                raise _no_resource()
        name = rest[1] if len(rest) > 1 else ""
        sub = "/".join(rest[2:]) if len(rest) > 2 else ""
        if sub and sub.split("/")[0] not in rtype.subresources:
            raise _no_resource()
        if rtype.plural in ("selfsubjectaccessreviews", "selfsubjectrulesreviews", "selfsubjectreviews",
                            "subjectaccessreviews", "localsubjectaccessreviews", "tokenreviews"):
            return self._review(req, rtype, namespace)
        if sub == "token" and rtype.kind == "ServiceAccount":
            return self._token_request(req, namespace, name)
        if sub == "log":
            return self._logs(req, namespace, name)
        if sub.split("/")[0] == "proxy" and rtype.kind in ("Node", "Service", "Pod"):
            return self._proxy(req, rtype.kind, namespace, name, sub[len("proxy"):])
        if sub == "scale":
            return self._scale(req, rtype, namespace, name)
        if sub == "eviction" and rtype.kind == "Pod":  # the Eviction subresource honours disruption budgets (`policy`)
            from . import policy

            return policy.evict(self, req, namespace, name, _json_body(req))
        if sub and sub.split("/")[0] not in ("status", "finalize"):
            raise errors.method_not_allowed(f"the lab does not implement {rtype.plural}/{sub.split('/')[0]}")
        m = req.method
        _check_write_options(req)
        if not name:
            if m == "GET":
                return self._watch(req, rtype, namespace) if req.flag("watch") else self._list(req, rtype, namespace)
            if m == "POST":
                return self._create(req, rtype, namespace)
            if m == "DELETE":
                return self._delete_collection(req, rtype, namespace)
            raise errors.method_not_allowed()
        if m == "GET":
            if self._sharable(req, rtype):
                obj = self.store.get(rtype.key, namespace, name, rtype.plural, rtype.group, copy=False)
                raw = self._json(rtype, obj)
                if raw is not None:
                    return Response(200, obj, raw=lambda: raw + b"\n")
                obj = copy.deepcopy(obj)
            else:
                obj = self.store.get(rtype.key, namespace, name, rtype.plural, rtype.group)
            return self._respond(req, rtype, obj)
        if m == "PUT":
            return self._update(req, rtype, namespace, name, sub, _decode(req, rtype))
        if m == "PATCH":
            return self._patch(req, rtype, namespace, name, sub)
        if m == "DELETE":
            return self._delete(req, rtype, namespace, name)
        raise errors.method_not_allowed()

    def _respond(self, req: Request, rtype: ResourceType, obj: dict[str, Any], code: int = 200) -> Response:
        obj = rtype.extra.get("present", _same)(obj)  # in the version asked for (HPA autoscaling/v1 ↔ v2)
        obj.setdefault("kind", rtype.kind)
        obj.setdefault("apiVersion", rtype.group_version)
        if _wants_table(req):
            return Response(code, tables.table(rtype.key, [obj], _now(), obj["metadata"].get("resourceVersion", ""),
                                               include=_include_object(req)))
        return Response(code, obj)

    # -- shared reads: the store's own dicts, encoded once -------------------------------------------------------
    def _sharable(self, req: Request, rtype: ResourceType) -> bool:
        """A read whose answer is the stored objects as they are: JSON (not a Table), no version conversion."""
        return req.shared and "present" not in rtype.extra and not _wants_table(req)

    def _json(self, rtype: ResourceType, obj: dict[str, Any]) -> bytes | None:
        """The compact JSON of a stored object (cached by resourceVersion), or None when the answer is not the object
        as stored (kind or apiVersion to fill in)."""
        if "kind" not in obj or "apiVersion" not in obj:
            return None
        rv = obj.get("metadata", {}).get("resourceVersion")
        if not rv:
            return json.dumps(obj, separators=(",", ":")).encode()
        key = (rtype.key, rv)
        raw = self._encoded.get(key)
        if raw is None:
            raw = json.dumps(obj, separators=(",", ":")).encode()
            if len(self._encoded) >= 20_000:
                self._encoded.clear()
            self._encoded[key] = raw
        return raw

    def _list(self, req: Request, rtype: ResourceType, namespace: str) -> Response:
        pred = _predicate(req, rtype)
        limit = max(0, _int_param(req, "limit", 0))  # kube-apiserver pages only for limit > 0
        if self._sharable(req, rtype):
            items, rv, cont, remaining = self.store.list(rtype.key, namespace or None, pred, limit, req.q("continue"),
                                                         copy=False)
            raws = [self._json(rtype, it) for it in items]
            items = [it if raw is not None else {**it, "kind": it.get("kind", rtype.kind),
                                                 "apiVersion": it.get("apiVersion", rtype.group_version)}
                     for it, raw in zip(items, raws, strict=True)]
            meta: dict[str, Any] = {"resourceVersion": rv}
            if cont:
                meta["continue"] = cont
                meta["remainingItemCount"] = remaining
            body = {"kind": f"{rtype.kind}List", "apiVersion": rtype.group_version, "metadata": meta, "items": items}

            def encode() -> bytes:
                head = json.dumps({k: body[k] for k in ("kind", "apiVersion", "metadata")}, separators=(",", ":"))
                parts = [raw if raw is not None else json.dumps(it, separators=(",", ":")).encode()
                         for it, raw in zip(items, raws, strict=True)]
                return b"".join((head[:-1].encode(), b',"items":[', b",".join(parts), b"]}\n"))

            return Response(200, body, raw=encode)
        items, rv, cont, remaining = self.store.list(rtype.key, namespace or None, pred, limit, req.q("continue"))
        items = [rtype.extra.get("present", _same)(it) for it in items]
        for it in items:
            it.setdefault("kind", rtype.kind)
            it.setdefault("apiVersion", rtype.group_version)
        if _wants_table(req):
            return Response(200, tables.table(rtype.key, items, _now(), rv, cont, include=_include_object(req)))
        meta: dict[str, Any] = {"resourceVersion": rv}
        if cont:
            meta["continue"] = cont
            meta["remainingItemCount"] = remaining
        return Response(200, {"kind": f"{rtype.kind}List", "apiVersion": rtype.group_version, "metadata": meta, "items": items})

    def _watch(self, req: Request, rtype: ResourceType, namespace: str) -> Response:
        pred = _predicate(req, rtype)
        timeout = _int_param(req, "timeoutSeconds", 1800)
        if timeout <= 0:
            timeout = 1800
        rv = req.q("resourceVersion")
        self.store.check_version(rv)  # a bad or expired resourceVersion is a Status response, not a stream
        as_table = _wants_table(req)
        include = _include_object(req) if as_table else "Metadata"

        if not as_table and "present" not in rtype.extra:  # each change encoded once for every watcher (Event.json)
            events = self.store.watch_events(rtype.key, namespace or None, rv, pred, timeout)

            def shared() -> Iterator[bytes]:
                for type_, ev in events:
                    obj = ev.obj
                    if "kind" in obj and "apiVersion" in obj:
                        yield b'{"type":"%s","object":%s}\n' % (type_.encode(), ev.json())
                    else:
                        obj = {**obj, "kind": obj.get("kind", rtype.kind),
                               "apiVersion": obj.get("apiVersion", rtype.group_version)}
                        yield (json.dumps({"type": type_, "object": obj}, separators=(",", ":")) + "\n").encode()

            return Response(200, None, "application/json", stream=shared())
        first = self.store.watch(rtype.key, namespace or None, rv, pred, timeout)

        def stream() -> Iterator[bytes]:
            for type_, obj in first:
                obj = rtype.extra.get("present", _same)(obj)
                obj.setdefault("kind", rtype.kind)
                obj.setdefault("apiVersion", rtype.group_version)
                payload = (tables.table(rtype.key, [obj], _now(), obj["metadata"]["resourceVersion"], include=include)
                           if as_table else obj)
                yield (json.dumps({"type": type_, "object": payload}) + "\n").encode()

        return Response(200, None, "application/json", stream=stream())

    def _create(self, req: Request, rtype: ResourceType, namespace: str) -> Response:
        if "create" not in rtype.verbs:
            raise errors.method_not_allowed()
        obj = _decode(req, rtype)
        meta = _metadata(obj)
        if rtype.namespaced:
            body_ns = meta.get("namespace")
            if body_ns and namespace and body_ns != namespace:
                raise errors.bad_request("the namespace of the provided object does not match the namespace sent on the request")
            namespace = namespace or body_ns or "default"
            meta["namespace"] = namespace
            ns = self.store.try_get("v1/namespaces", "", namespace)
            if ns is None:
                raise errors.not_found("namespaces", namespace)
            if ns["metadata"].get("deletionTimestamp"):
                raise APIError(403, "Forbidden",
                               f'{rtype.plural} "{meta.get("name") or meta.get("generateName", "")}" is forbidden: unable to create new content in namespace {namespace} because it is being terminated',
                               details={"name": meta.get("name", ""), "kind": rtype.plural,
                                        "causes": [{"reason": "NamespaceTerminating", "message": f"namespace {namespace} is being terminated", "field": "metadata.namespace"}]})
        else:
            meta.pop("namespace", None)
        meta.pop("uid", None)
        val.generate_name(meta)
        from . import policy  # Priority, LimitRanger, DefaultIngressClass, ResourceQuota (`policy.admit`)

        if rtype.kind == "Service":
            policy.admit(self.store, rtype.kind, rtype.group, obj, namespace, req.q("dryRun") == "All")
            return self._create_service(req, rtype, obj)
        if rtype.default:
            rtype.default(obj)
        if rtype.kind == "Pod" and self.admission is not None:  # mutating admission: after defaults, before validation
            self.admission.admit(obj, namespace)
        policy.admit(self.store, rtype.kind, rtype.group, obj, namespace, req.q("dryRun") == "All", req.warnings)
        return self._finish_create(req, rtype, obj)

    def _create_service(self, req: Request, rtype: ResourceType, obj: dict[str, Any]) -> Response:
        """A Service is decoded and defaulted, then given its ClusterIPs and node ports, validated and stored in one
        step under the store's lock (kube-apiserver's beginCreate runs before validation, as here)."""
        why = val.service_decode_error(obj)
        if why:
            raise errors.bad_request(why)
        val.default_service(obj)
        with self.services.transaction():
            self.services.begin_create(obj, dry_run=req.q("dryRun") == "All")
            return self._finish_create(req, rtype, obj)

    def _finish_create(self, req: Request, rtype: ResourceType, obj: dict[str, Any]) -> Response:
        meta = obj["metadata"]
        causes = rtype.validate(obj)
        if causes:
            raise errors.invalid(rtype.kind, str(meta.get("name") or ""), causes, rtype.group)
        rbac.check_escalation(self.authz, req.user, rtype.kind, obj)
        obj["kind"], obj["apiVersion"] = rtype.kind, rtype.group_version
        from . import managedfields as mf
        from .store import rfc3339

        applied = getattr(req, "applied_managed_fields", None)  # set by server-side apply's create (`_patch`)
        if applied is not None:
            meta["managedFields"] = applied
        else:  # the field manager sees the decoded, defaulted object: before allocation, admission, _on_create
            manager = mf.manager_name(req.q("fieldManager"), req.headers.get("user-agent", ""))
            mf.check_options("CreateOptions", req.q("fieldManager"))
            base = obj
            if rtype.kind in ("Service", "Pod"):
                try:
                    base = _json_body(req)
                    _metadata(base)
                    (val.default_service if rtype.kind == "Service" else rtype.default or (lambda o: None))(base)
                except Exception:  # noqa: BLE001 - a body only an earlier step could read: the object as it is
                    base = obj
            elif rtype.kind == "Namespace":  # its name label is a default upstream (SetDefaults_Namespace)
                base = copy.deepcopy(obj)
                base["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = meta.get("name")
            base = {**base, "metadata": {**base["metadata"], "managedFields": meta.get("managedFields")}} \
                if isinstance(base, dict) and isinstance(base.get("metadata"), dict) else obj
            fields = mf.update(rtype.kind, rtype.group_version, None, base, manager, rfc3339(self.store.clock()),
                               has_status=rtype.has_status)
            if fields:
                meta["managedFields"] = fields
            else:
                meta.pop("managedFields", None)
        self._on_create(rtype, obj)
        if req.q("dryRun") == "All":  # validated and answered as stored, nothing stored (DryRunnableStorage.Create)
            key = (meta.get("namespace", ""), meta.get("name", ""))
            if self.store.try_get(rtype.key, *key) is not None:
                raise errors.already_exists(rtype.plural, key[1], rtype.group)
            import uuid

            meta["uid"] = meta.get("uid") or str(uuid.uuid4())
            meta["creationTimestamp"] = rfc3339(self.store.clock())
            if rtype.kind != "Event":
                meta["generation"] = 1
            meta.pop("resourceVersion", None)
            return self._respond(req, rtype, obj, 201)
        created = self.store.create(rtype.key, obj, rtype.plural, rtype.group)
        return self._respond(req, rtype, created, 201)

    def _on_create(self, rtype: ResourceType, obj: dict[str, Any]) -> None:
        """Fields the API server owns at creation."""
        if rtype.kind == "Pod":
            obj["status"] = {"phase": "Pending", "qosClass": val.qos_class(obj)}
        elif rtype.kind == "Namespace":
            obj["spec"] = {"finalizers": ["kubernetes"]}
            obj["status"] = {"phase": "Active"}
            labels = obj["metadata"].setdefault("labels", {})
            labels["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
        elif rtype.kind == "APIService":
            from . import apiservices
            from .store import rfc3339

            apiservices.prepare_for_create(obj, rfc3339(self.store.clock()))
        elif rtype.kind in ("Job", "DaemonSet"):
            obj["status"] = {} if rtype.kind == "Job" else {
                "currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0, "numberReady": 0}
            tmpl = obj["spec"]["template"]
            if rtype.kind == "Job":
                import uuid

                uid = str(uuid.uuid4())  # the job's selector label, as the job controller sets it
                obj["metadata"]["uid"] = uid
                sel = {"batch.kubernetes.io/controller-uid": uid}
                obj["spec"].setdefault("selector", {"matchLabels": sel})
                labels = tmpl.setdefault("metadata", {}).setdefault("labels", {})
                labels.update({**sel, "batch.kubernetes.io/job-name": obj["metadata"]["name"],
                               "controller-uid": uid, "job-name": obj["metadata"]["name"]})

    def _update(self, req: Request, rtype: ResourceType, namespace: str, name: str, sub: str, obj: dict[str, Any]) -> Response:
        if "update" not in rtype.verbs:
            raise errors.method_not_allowed()
        meta = _metadata(obj)
        if meta.get("name") and meta["name"] != name:
            raise errors.bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL ({name})")
        if rtype.namespaced and meta.get("namespace") and meta["namespace"] != namespace:
            raise errors.bad_request("the namespace of the provided object does not match the namespace sent on the request")
        meta["name"] = name
        if rtype.namespaced:
            meta["namespace"] = namespace
        from . import managedfields as mf
        from .store import rfc3339

        applying = media_type(req) == mf.APPLY  # server-side apply has set managedFields itself (`_patch`)
        applied = meta.get("managedFields")
        if not applying:
            mf.check_options("PatchOptions" if req.method == "PATCH" else "UpdateOptions", req.q("fieldManager"),
                             force=req.query.get("force"))
        manager = mf.manager_name(req.q("fieldManager"), req.headers.get("user-agent", ""))
        if rtype.kind == "Service" and not sub:
            if not applying and not val.service_decode_error(obj):
                live = self.store.get(rtype.key, namespace, name, rtype.plural, rtype.group)
                seen = copy.deepcopy(obj)
                val.default_service(seen)  # the field manager sees the decoded, defaulted Service
                fields = mf.update(rtype.kind, rtype.group_version, live, seen, manager, rfc3339(self.store.clock()),
                                   has_status=rtype.has_status)
                mf.put(meta, fields)
            return self._update_service(req, rtype, obj)
        old = self.store.get(rtype.key, namespace, name, rtype.plural, rtype.group)
        if sub in ("status", "finalize"):
            new = copy.deepcopy(old)
            if sub == "status":
                new["status"] = obj.get("status", {})
            else:
                new["spec"] = obj.get("spec", {})
            new["metadata"]["resourceVersion"] = meta.get("resourceVersion") or old["metadata"]["resourceVersion"]
            obj = new
        else:
            if rtype.has_status:
                obj["status"] = old.get("status", {})
            if rtype.default:
                rtype.default(obj)
            update_check = rtype.extra.get("validate_update")
            causes = (val.pod_update(old, obj) if rtype.kind == "Pod" else update_check(old, obj) if update_check
                      else rtype.validate(obj))
            if causes:
                raise errors.invalid(rtype.kind, name, causes, rtype.group)
            rbac.check_escalation(self.authz, req.user, rtype.kind, obj)
            from . import policy  # Priority, PodSecurity (`policy.admit_update`)

            policy.admit_update(self.store, rtype.kind, rtype.group, old, obj, namespace, req.warnings)
        obj["kind"], obj["apiVersion"] = rtype.kind, rtype.group_version
        meta = obj["metadata"]
        if applying:
            mf.put(meta, applied)
        else:
            fields = mf.update(rtype.kind, rtype.group_version, old, obj, manager, rfc3339(self.store.clock()),
                               subresource=sub, has_status=rtype.has_status)
            mf.put(meta, fields)
        rv = meta.get("resourceVersion")
        if (req.q("dryRun") == "All" or applying) and rv and rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rtype.plural, name, rtype.group)
        if applying and not sub and {**obj, "metadata": {**meta, "resourceVersion": ""}} == \
                {**old, "metadata": {**old["metadata"], "resourceVersion": ""}}:
            return self._respond(req, rtype, old)  # nothing changed: nothing written (GuaranteedUpdate)
        spec_changed = (rtype.extra.get("spec_changed") if not sub else None) or (lambda a, b: a.get("spec") != b.get("spec"))
        if req.q("dryRun") == "All":  # answered as it would be stored, nothing stored
            for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
                if k in old["metadata"]:
                    meta[k] = old["metadata"][k]
            if spec_changed(old, obj):
                meta["generation"] = old["metadata"].get("generation", 1) + 1
            meta["resourceVersion"] = old["metadata"]["resourceVersion"]
            return self._respond(req, rtype, obj)
        updated = self.store.update(rtype.key, obj, kind=rtype.plural, group=rtype.group, spec_changed=spec_changed)
        if sub == "finalize" and rtype.kind == "Namespace" and updated["metadata"].get("deletionTimestamp") \
                and not updated["spec"].get("finalizers"):
            self.store.remove(rtype.key, "", name)
        return self._respond(req, rtype, updated)

    def _update_service(self, req: Request, rtype: ResourceType, obj: dict[str, Any]) -> Response:
        """kube-apiserver's beginUpdate (keep what it allocated and the client left out, allocate what a type change
        needs), dropTypeDependentFields, ValidateServiceUpdate, under the store's lock."""
        why = val.service_decode_error(obj)
        if why:
            raise errors.bad_request(why)
        val.default_service(obj)
        meta = obj["metadata"]
        with self.services.transaction():
            old = self.store.get(rtype.key, meta["namespace"], meta["name"], rtype.plural, rtype.group)
            default_on_read(old, self.services.ip_range.family)
            obj["status"] = copy.deepcopy(old.get("status") or {})
            self.services.begin_update(obj, old, dry_run=req.q("dryRun") == "All")
            causes = val.service_update(old, obj)
            if causes:
                raise errors.invalid(rtype.kind, meta["name"], causes, rtype.group)
            obj["kind"], obj["apiVersion"] = rtype.kind, rtype.group_version
            if req.q("dryRun") == "All":  # answered as it would be stored (resourceVersion checked), nothing stored
                if meta.get("resourceVersion") and meta["resourceVersion"] != old["metadata"]["resourceVersion"]:
                    raise errors.conflict(rtype.plural, meta["name"], rtype.group)
                for k in ("uid", "creationTimestamp", "deletionTimestamp", "generation", "resourceVersion"):
                    if k in old["metadata"]:
                        meta[k] = old["metadata"][k]
                return self._respond(req, rtype, obj)
            updated = self.store.update(rtype.key, obj, kind=rtype.plural, group=rtype.group,
                                        spec_changed=lambda a, b: a.get("spec") != b.get("spec"))
        return self._respond(req, rtype, updated)

    def _patch(self, req: Request, rtype: ResourceType, namespace: str, name: str, sub: str) -> Response:
        if "patch" not in rtype.verbs:
            raise errors.method_not_allowed()
        ct = media_type(req)
        if ct == "application/apply-patch+yaml":  # server-side apply (`managedfields`)
            import dataclasses

            from . import managedfields as mf
            from .store import rfc3339

            force = req.query.get("force", "")
            if force not in ("", "1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"):
                raise errors.bad_request(f'strconv.ParseBool: parsing {json.dumps(force[:60])}: invalid syntax')
            mf.check_options("PatchOptions", req.q("fieldManager"), apply=True)
            config = mf.check_applied(rtype.kind, rtype.group_version, _json_body(req, media=(mf.APPLY,)))
            as_json = {**req.headers, "content-type": "application/json"}
            live = self.store.try_get(rtype.key, namespace, name)
            if live is None and sub:
                raise errors.not_found(rtype.plural, name, rtype.group)
            if live is None and "create" not in rtype.verbs:
                raise errors.method_not_allowed()
            merged, _ = mf.apply(rtype.kind, rtype.group_version, live, config, req.q("fieldManager"),
                                 force in ("1", "t", "T", "TRUE", "true", "True"), rfc3339(self.store.clock()),
                                 subresource=sub, has_status=rtype.has_status)
            mmeta = _metadata(merged)
            if mmeta.get("name") != name:  # checkName
                raise errors.bad_request(f"the name of the object ({mmeta.get('name') or ''}) does not match the "
                                         f"name on the URL ({name})")
            if rtype.namespaced and mmeta.get("namespace") and mmeta["namespace"] != namespace:
                raise errors.bad_request("the namespace of the provided object does not match the namespace sent "
                                         "on the request")
            if live is None:  # created by the apply: 201 (forceAllowCreate)
                uid = (config.get("metadata") or {}).get("uid")
                if uid:
                    raise errors.conflict(rtype.plural, name, rtype.group,
                                          f"uid mismatch: the provided object specified uid {uid}, and no existing "
                                          "object was found")
                fields = mmeta.pop("managedFields", None)
                for k in ("resourceVersion", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
                    mmeta.pop(k, None)
                create = dataclasses.replace(req, method="POST", body=json.dumps(merged).encode(), headers=as_json)
                create.applied_managed_fields = fields  # type: ignore[attr-defined]
                return self._create(create, rtype, namespace)
            _decode(dataclasses.replace(req, body=json.dumps(config).encode(), headers=as_json), rtype)  # strict
            return self._update(req, rtype, namespace, name, sub, merged)
        if "force" in req.query:
            from . import managedfields as mf

            mf.check_options("PatchOptions", req.q("fieldManager"), force=req.query["force"])
        body = _json_body(req, media=patch.MEDIA)
        # read only: patch.apply builds a new object (a copy of what it does not change) and never changes ``old``
        old = self.store.get(rtype.key, namespace, name, rtype.plural, rtype.group, copy=False)
        new = patch.apply(ct, old, body)
        if ct.split(";")[0].strip() == "application/json-patch+json":  # `copy` and `move` can grow or deepen it;
            _check_shape(new, MAX_BODY)  # a merge patch cannot: no deeper or larger than the stored object and the body
        if not isinstance(new, dict):
            raise errors.bad_request("the patch did not produce an object")
        strict.check_patched(strict.directive(req.q("fieldValidation")), ct, rtype.group, rtype.version, rtype.kind,
                             body, new, req.warnings)
        meta = _metadata(new)
        if meta.get("resourceVersion") == old["metadata"]["resourceVersion"] and not _patch_sets_rv(body):
            meta.pop("resourceVersion", None)
        if sub != "status" and rtype.has_status:
            new["status"] = clone(old.get("status", {}))  # ``old`` is the stored object: never share its parts
        return self._update(req, rtype, namespace, name, sub, new)

    def _delete(self, req: Request, rtype: ResourceType, namespace: str, name: str) -> Response:
        """DELETE as kube-apiserver's generic store: preconditions, graceful deletion (pods), the garbage collector's
        finalizers by ``orphanDependents`` > ``propagationPolicy`` > the object's own finalizers > the kind's default
        (ReplicationController and Job orphan, the rest is background), and the answer per store: the object while
        deletion is pending, else the object for kinds with ReturnDeletedObject, else a Status with details."""
        if "delete" not in rtype.verbs:
            raise errors.method_not_allowed()
        opts = _json_body(req, allow_empty=True) or {}
        if not isinstance(opts, dict):
            raise errors.bad_request("DeleteOptions must be an object")
        grace = opts.get("gracePeriodSeconds")
        if req.q("gracePeriodSeconds"):
            grace = _int_param(req, "gracePeriodSeconds", 0)
        if grace is not None and (not isinstance(grace, int) or isinstance(grace, bool)):
            raise errors.bad_request(f"gracePeriodSeconds must be an integer, not {json.dumps(grace)[:40]}")
        if grace is not None and grace < 0:
            grace = 0  # as kube-apiserver: a negative grace period deletes at once
        policy, orphan = _delete_propagation(req, opts)
        pre = opts.get("preconditions") or {}
        uid = pre.get("uid") if isinstance(pre, dict) else None
        obj = self.store.get(rtype.key, namespace, name, rtype.plural, rtype.group)
        if isinstance(pre, dict) and pre.get("resourceVersion") and pre["resourceVersion"] != obj["metadata"]["resourceVersion"]:
            raise errors.conflict(rtype.plural, name, rtype.group,
                                  f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, ResourceVersion in object meta: {obj['metadata']['resourceVersion']}")
        if uid and uid != obj["metadata"]["uid"]:
            raise errors.conflict(rtype.plural, name, rtype.group,
                                  f"Precondition failed: UID in precondition: {uid}, UID in object meta: {obj['metadata']['uid']}")
        if rtype.kind == "Job" and rtype.group == "batch" and policy is None and orphan is None \
                and JOB_DELETE_WARNING not in req.warnings:
            req.warnings.append(JOB_DELETE_WARNING)
        from .policy import check_delete

        check_delete(rtype.kind, rtype.group, name)  # the system PriorityClasses may not be deleted
        if req.q("dryRun") == "All":
            return self._respond(req, rtype, obj)
        if rtype.kind == "Namespace":
            if name in PROTECTED_NAMESPACES:
                raise APIError(403, "Forbidden", f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                               details={"name": name, "kind": "namespaces"})
            done = self.store.mark_deleting(rtype.key, "", name, 0, uid=uid)
            done["status"] = {**done.get("status", {}), "phase": "Terminating"}
            done = self.store.update(rtype.key, done, check_rv=False)
            return self._respond(req, rtype, done)
        if rtype.graceful:
            if grace is None:
                grace = int(obj.get("spec", {}).get("terminationGracePeriodSeconds", 30))
            if grace <= 0 or not obj.get("spec", {}).get("nodeName"):  # forced, or never bound: gone at once
                return self._respond(req, rtype, self.store.remove(rtype.key, namespace, name, uid=uid))
            return self._respond(req, rtype, self.store.mark_deleting(rtype.key, namespace, name, grace, uid=uid))
        code = 202 if orphan is False else 200  # only for the deprecated orphanDependents=false, while pending
        meta = obj["metadata"]
        current = list(meta.get("finalizers") or [])
        wanted = _gc_finalizers(rtype, current, policy, orphan)
        if wanted != current:
            meta["finalizers"] = wanted
            if not wanted:
                meta.pop("finalizers")
            obj = self.store.update(rtype.key, obj, check_rv=False)
            if meta.get("deletionTimestamp") and not wanted:  # its last finalizer went: the store removed it
                return self._deleted(req, rtype, obj)
        if meta.get("deletionTimestamp"):  # already pending: nothing else changes
            return self._respond(req, rtype, obj, code)
        if wanted:
            return self._respond(req, rtype, self.store.mark_deleting(rtype.key, namespace, name, 0, uid=uid), code)
        return self._deleted(req, rtype, self.store.remove(rtype.key, namespace, name, uid=uid))

    def _deleted(self, req: Request, rtype: ResourceType, gone: dict[str, Any]) -> Response:
        if rtype.kind in RETURNS_DELETED_OBJECT:
            return self._respond(req, rtype, gone)
        meta = gone["metadata"]
        return Response(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                              "details": {"name": meta["name"], "group": rtype.group, "kind": rtype.plural,
                                          "uid": meta["uid"]}})

    def _delete_collection(self, req: Request, rtype: ResourceType, namespace: str) -> Response:
        """DELETE on a collection: each listed object as a DELETE with the same options; the answer is the list as it
        was (kube-apiserver's DeleteCollection)."""
        if "deletecollection" not in rtype.verbs:
            raise errors.method_not_allowed()
        items, *_ = self.store.list(rtype.key, namespace or None, _predicate(req, rtype))
        for it in items:
            one = Request("DELETE", "", req.query, req.headers, req.body, user=req.user)
            try:
                self._delete(one, rtype, it["metadata"].get("namespace", ""), it["metadata"]["name"])
            except APIError as exc:
                if exc.code != 404:
                    raise
            req.warnings += [w for w in one.warnings if w not in req.warnings]
        return Response(200, {"kind": f"{rtype.kind}List", "apiVersion": rtype.group_version,
                              "metadata": {"resourceVersion": str(self.store.resource_version)}, "items": items})

    def _scale(self, req: Request, rtype: ResourceType, namespace: str, name: str) -> Response:
        """The ``scale`` subresource: an autoscaling/v1 Scale (spec.replicas, status.replicas, status.selector) read,
        replaced or patched; writing it sets the object's spec.replicas (its generation moves)."""
        from . import deployments as workloads

        if req.method == "GET":
            return Response(200, workloads.to_scale(self.store.get(rtype.key, namespace, name, rtype.plural, rtype.group)))
        if req.method not in ("PUT", "PATCH"):
            raise errors.method_not_allowed()
        _check_write_options(req)
        obj = self.store.get(rtype.key, namespace, name, rtype.plural, rtype.group)
        current = workloads.to_scale(obj)
        if req.method == "PUT":
            scale = _json_body(req)
            if not isinstance(scale, dict):
                raise errors.bad_request(f"the body must be a Scale object, not {type(scale).__name__}")
            if scale.get("kind") not in (None, "", "Scale"):
                raise errors.bad_request(f"the kind in the data ({scale['kind']}) does not match the expected kind (Scale)")
        else:
            ct = media_type(req)
            if ct not in patch.MEDIA:
                raise unsupported_media(patch.MEDIA)
            body = _json_body(req, media=patch.MEDIA)
            scale = patch.apply(ct, current, body)
            if not isinstance(scale, dict):
                raise errors.bad_request("the patch did not produce an object")
            if (scale.get("metadata") or {}).get("resourceVersion") == current["metadata"]["resourceVersion"] \
                    and not _patch_sets_rv(body):
                scale["metadata"].pop("resourceVersion", None)
        causes = workloads.validate_scale(scale)
        if causes:
            raise errors.invalid("Scale", name, causes, "autoscaling")
        want = int((scale.get("spec") or {}).get("replicas") or 0)
        rv = (scale.get("metadata") or {}).get("resourceVersion") if isinstance(scale.get("metadata"), dict) else None
        for _ in range(5):  # GuaranteedUpdate: retried on a concurrent write, the caller's resourceVersion checked
            if rv and rv != obj["metadata"]["resourceVersion"]:
                raise errors.conflict(rtype.plural, name, rtype.group)
            from . import managedfields as mf
            from .store import rfc3339

            before = copy.deepcopy(obj)
            obj["spec"]["replicas"] = want
            mf.put(obj["metadata"], mf.update(rtype.kind, rtype.group_version, before, obj,
                                              mf.manager_name(req.q("fieldManager"), req.headers.get("user-agent", "")),
                                              rfc3339(self.store.clock()), subresource="scale", has_status=rtype.has_status))
            if req.q("dryRun") == "All":
                return Response(200, workloads.to_scale(obj))
            try:
                updated = self.store.update(rtype.key, obj, kind=rtype.plural, group=rtype.group,
                                            spec_changed=lambda a, b: a.get("spec") != b.get("spec"))
                return Response(200, workloads.to_scale(updated))
            except APIError as exc:
                if exc.code != 409:
                    raise
                obj = self.store.get(rtype.key, namespace, name, rtype.plural, rtype.group)
        raise errors.conflict(rtype.plural, name, rtype.group)

    # -- special endpoints -----------------------------------------------------------------------
    def _review(self, req: Request, rtype: ResourceType, namespace: str = "") -> Response:
        """SelfSubjectReview, SelfSubjectAccessReview, SelfSubjectRulesReview, SubjectAccessReview,
        LocalSubjectAccessReview and TokenReview: nothing stored, the answer in ``status`` (201), as their REST
        storages in kube-apiserver (``pkg/registry/{authorization,authentication}``) give it."""
        if req.method != "POST":
            raise errors.method_not_allowed()
        body = _decode(req, rtype)
        spec = body.get("spec")
        if spec is not None and not isinstance(spec, dict):
            raise errors.bad_request(f"{rtype.kind}.spec must be an object")
        spec = spec or {}
        meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
        out: dict[str, Any] = {"kind": rtype.kind, "apiVersion": rtype.group_version,
                               "metadata": {"creationTimestamp": None}}
        user = req.user or ADMIN
        if rtype.kind == "SelfSubjectReview":
            out["status"] = {"userInfo": user.info()}
            return Response(201, out)
        out["spec"] = spec
        if rtype.kind == "TokenReview":
            return self._token_review(req, rtype, spec, out)
        if rtype.kind == "SelfSubjectRulesReview":
            ns = spec.get("namespace", "")
            if not isinstance(ns, str):
                raise errors.bad_request("SelfSubjectRulesReview.spec.namespace must be a string")
            out["status"] = self.authz.subject_rules(user, ns)
            return Response(201, out)
        causes = _access_review_causes(rtype.kind, spec, meta, namespace)
        if rtype.kind == "LocalSubjectAccessReview":
            if not namespace:
                raise errors.bad_request("namespace is required on this type: ")
            if meta.get("namespace", namespace) != namespace:
                raise errors.bad_request(f"spec.resourceAttributes.namespace must match namespace: {namespace}")
        if causes:
            raise errors.invalid(rtype.kind, "", causes, rtype.group)
        if rtype.kind == "SelfSubjectAccessReview":
            subject = user
        else:  # who the review names: its user, groups, uid and extra exactly (no implicit groups added)
            extra = spec.get("extra") or {}
            if not isinstance(spec.get("groups") or [], list) or not isinstance(extra, dict) \
                    or not all(isinstance(x, list) for x in extra.values()):
                raise errors.bad_request(f"{rtype.kind}.spec.groups must be a list of strings and spec.extra a map of lists")
            subject = User(str(spec.get("user") or ""), str(spec.get("uid") or ""),
                           tuple(str(g) for g in spec.get("groups") or []),
                           tuple((str(k), tuple(str(x) for x in (v or []))) for k, v in sorted(extra.items())))
        if rtype.kind == "LocalSubjectAccessReview":
            out["metadata"]["namespace"] = namespace
        attrs = _review_attributes(subject, spec)
        allowed, reason = self.authz.authorize(attrs)
        out["status"] = {"allowed": allowed}
        if reason:
            out["status"]["reason"] = reason
        return Response(201, out)

    def _token_review(self, req: Request, rtype: ResourceType, spec: dict[str, Any], out: dict[str, Any]) -> Response:
        """TokenReview (``pkg/registry/authentication/tokenreview``): who a token is, for the audiences asked (the
        API server's by default)."""
        token = spec.get("token")
        if not token or not isinstance(token, str):
            raise errors.bad_request("token is required for TokenReview in authentication")
        auds = spec.get("audiences") or None
        if auds is not None and (not isinstance(auds, list) or not all(isinstance(a, str) for a in auds)):
            raise errors.bad_request("TokenReview.spec.audiences must be a list of strings")
        user, why, accepted = self.authn.review(token, auds)
        status: dict[str, Any] = {"authenticated": user is not None, "user": {}}
        if user is not None:
            status["user"] = user.info()
            status["audiences"] = accepted
        if why:
            status["error"] = why
        out["status"] = status
        return Response(201, out)

    def _token_request(self, req: Request, namespace: str, name: str) -> Response:
        """``POST serviceaccounts/<name>/token`` (TokenRequest, ``kubectl create token``): a signed token for the
        ServiceAccount, optionally bound to a Pod or Secret (``pkg/registry/core/serviceaccount/storage/token.go``)."""
        from . import satokens

        if req.method != "POST":
            raise errors.method_not_allowed()
        if self.tokens is None:
            raise _no_resource()
        body = _json_body(req)
        if not isinstance(body, dict):
            raise errors.bad_request("the body must be a TokenRequest object")
        if body.get("kind") not in (None, "TokenRequest") or body.get("apiVersion") not in (None, "authentication.k8s.io/v1"):
            raise errors.bad_request(f"the kind in the data ({body.get('kind')}) does not match the expected kind (TokenRequest)")
        meta = _metadata(body)
        spec = body.get("spec") if isinstance(body.get("spec"), dict) else {}
        group = "authentication.k8s.io"
        if meta.get("name") and meta["name"] != name:
            raise errors.invalid("TokenRequest", name, [val.invalid_value(
                "metadata.name", meta["name"], "must match the service account name if specified")], group)
        if meta.get("namespace") and meta["namespace"] != namespace:
            raise errors.invalid("TokenRequest", name, [val.invalid_value(
                "metadata.namespace", meta["namespace"], "must match the service account namespace if specified")], group)
        sa = self.store.get("v1/serviceaccounts", namespace, name, "serviceaccounts")
        auds = spec.get("audiences") or [self.tokens.issuer]
        if not isinstance(auds, list) or not all(isinstance(a, str) for a in auds):
            raise errors.bad_request("TokenRequest.spec.audiences must be a list of strings")
        exp = spec.get("expirationSeconds")
        exp = 3600 if exp is None else exp  # authentication/v1 default
        if not isinstance(exp, int) or isinstance(exp, bool):
            raise errors.bad_request("TokenRequest.spec.expirationSeconds must be an integer")
        causes = []
        if exp < satokens.MIN_EXPIRATION:
            causes.append(val.cause("spec.expirationSeconds", "Invalid value", f"{exp}: may not specify a duration less than 10 minutes"))
        if exp > 1 << 32:
            causes.append(val.cause("spec.expirationSeconds", "Invalid value", f"{exp}: may not specify a duration larger than 2^32 seconds"))
        if causes:
            raise errors.invalid("TokenRequest", "", causes, group)
        pod = None
        ref = spec.get("boundObjectRef")
        if ref is not None and not isinstance(ref, dict):
            raise errors.bad_request("TokenRequest.spec.boundObjectRef must be an object")
        if isinstance(ref, dict):
            kind, api_version, ref_name = ref.get("kind"), ref.get("apiVersion", ""), str(ref.get("name") or "")
            if kind == "Pod" and api_version in ("", "v1"):
                pod = self.store.get("v1/pods", namespace, ref_name, "pods")
                uid = pod["metadata"]["uid"]
            elif kind == "Secret" and api_version in ("", "v1"):
                raise errors.bad_request("cannot bind token to object of type /v1, Kind=Secret: the lab binds tokens to pods only")
            else:
                raise errors.bad_request(f"cannot bind token to object of type {api_version}, Kind={kind}")
            if ref.get("uid") and ref["uid"] != uid:
                raise errors.conflict(kind, ref_name, "", f"the UID in the bound object reference ({ref['uid']}) does not "
                                      "match the UID in record. The object might have been deleted and then recreated")
        token, expires, _ = satokens.request_token(self.store, self.tokens, namespace, name, auds, exp, pod)
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires - exp))
        out_spec: dict[str, Any] = {"audiences": auds, "expirationSeconds": exp, "boundObjectRef": ref if isinstance(ref, dict) else None}
        return Response(201, {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                              "metadata": {"name": sa["metadata"]["name"], "namespace": namespace, "creationTimestamp": created},
                              "spec": out_spec, "status": {"token": token, "expirationTimestamp": when}})

    def _logs(self, req: Request, namespace: str, name: str) -> Response:
        if req.method != "GET":
            raise errors.method_not_allowed()
        pod = self.store.get("v1/pods", namespace, name, "pods")
        if self.logs is None:
            raise errors.bad_request("logs are not available: the lab has no kubelet")
        return Response(200, None, "text/plain", stream=self.logs(pod, req.query))

    def _proxy(self, req: Request, kind: str, namespace: str, name: str, rest: str) -> Response:
        """nodes/services/pods ``…/proxy``: through the lab's API proxy (dialing from the node's network namespace), or
        for a node without one, the kubelet's endpoints in-process."""
        if kind != "Node" and not namespace:
            raise _no_resource()
        if self.proxy is None:
            if kind != "Node":
                raise _no_resource()
            return self._node_proxy(req, name, rest)
        args = (req.method, name, rest, req.query, req.headers, req.body)
        if kind == "Node":
            return self.proxy.node(*args)
        if kind == "Service":
            return self.proxy.service(req.method, namespace, name, rest, req.query, req.headers, req.body)
        return self.proxy.pod(req.method, namespace, name, rest, req.query, req.headers, req.body)

    def _node_proxy(self, req: Request, node: str, rest: str) -> Response:
        self.store.get("v1/nodes", "", node, "nodes")
        if self.node_proxy is None:
            raise _no_resource()
        if req.method != "GET":
            raise errors.method_not_allowed()
        return self.node_proxy(node, rest or "/", req.query)


# -- helpers --------------------------------------------------------------------------------------

def _same(obj: dict[str, Any]) -> dict[str, Any]:
    return obj


def _no_resource() -> APIError:
    return APIError(404, "NotFound", "the server could not find the requested resource", details={})


def _access_review_causes(kind: str, spec: dict[str, Any], meta: dict[str, Any], namespace: str) -> list[dict[str, str]]:
    """pkg/apis/authorization/validation for the access reviews."""
    res, non = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    causes = []
    if res is not None and not isinstance(res, dict) or non is not None and not isinstance(non, dict):
        raise errors.bad_request(f"{kind}.spec attributes must be objects")
    if res is not None and non is not None:
        causes.append(val.cause("spec.nonResourceAttributes", "Invalid value",
                                f"{_go_struct('v1.NonResourceAttributes', non)}: cannot be specified in combination with resourceAttributes"))
    if res is None and non is None:
        causes.append(val.cause("spec.resourceAttributes", "Invalid value",
                                '"null": exactly one of nonResourceAttributes or resourceAttributes must be specified'))
    if kind in ("SubjectAccessReview", "LocalSubjectAccessReview") and not spec.get("user") and not spec.get("groups"):
        causes.append(val.cause("spec.user", "Invalid value", '"": at least one of user or group must be specified'))
    rest = {k: v for k, v in meta.items() if v is not None and k not in ("managedFields", "creationTimestamp")}
    if kind == "LocalSubjectAccessReview":
        rest.pop("namespace", None)
        if rest:
            causes.append(val.cause("metadata", "Invalid value", f"{json.dumps(rest)}: must be empty except for namespace"))
        if res is not None and (res.get("namespace") or "") != namespace:
            causes.append(val.invalid_value("spec.resourceAttributes.namespace", res.get("namespace") or "",
                                            "must match metadata.namespace"))
        if non is not None:
            causes.append(val.cause("spec.nonResourceAttributes", "Invalid value",
                                    f"{_go_struct('v1.NonResourceAttributes', non)}: disallowed on this kind of request"))
    elif rest:
        causes.append(val.cause("metadata", "Invalid value", f"{json.dumps(rest)}: must be empty"))
    return causes


def _go_struct(name: str, fields: dict[str, Any]) -> str:
    return "&" + name + "{" + ", ".join(f"{k[:1].upper()}{k[1:]}:{json.dumps(v)}" for k, v in fields.items()) + "}"


def _review_attributes(user: User, spec: dict[str, Any]) -> rbac.Attributes:
    """authorizationutil.ResourceAttributesFrom / NonResourceAttributesFrom."""
    res = spec.get("resourceAttributes")
    if isinstance(res, dict):
        return rbac.Attributes(user, str(res.get("verb") or ""), True, namespace=str(res.get("namespace") or ""),
                               api_group=str(res.get("group") or ""), api_version=str(res.get("version") or ""),
                               resource=str(res.get("resource") or ""), subresource=str(res.get("subresource") or ""),
                               name=str(res.get("name") or ""))
    non = spec.get("nonResourceAttributes") or {}
    return rbac.Attributes(user, str(non.get("verb") or ""), False, path=str(non.get("path") or ""))


def _wants_table(req: Request) -> bool:
    accept = req.headers.get("accept", "")
    first = accept.split(",")[0]
    return "as=Table" in first


def _include_object(req: Request) -> str:
    """``?includeObject=`` of a Table request (meta.k8s.io TableOptions): None, Metadata (the default) or Object."""
    value = req.q("includeObject") or "Metadata"
    if value not in ("None", "Metadata", "Object"):
        raise errors.bad_request(f'includeObject: Unsupported value: "{value}": supported values: "Metadata", "None", '
                                 '"Object"')
    return value


def _predicate(req: Request, rtype: ResourceType) -> Callable[[dict[str, Any]], bool]:
    labels = parse_label_selector(req.q("labelSelector"))
    fields = parse_field_selector(req.q("fieldSelector"), rtype.fields)
    return lambda obj: labels(obj) and fields(obj)


BODY_MEDIA = ("application/json", "application/yaml", protobuf.MEDIA_TYPE)  # protobuf: kubectl's typed clients
MAX_DEPTH = 100  # nesting levels a body may have: Kubernetes objects need a few dozen


def media_type(req: Request) -> str:
    """The Content-Type's media type, lower case; empty or ``*/*`` is JSON."""
    ct = req.headers.get("content-type", "").split(";")[0].strip().lower()
    return "application/json" if ct in ("", "*/*") else ct


def unsupported_media(accepted: tuple[str, ...]) -> APIError:
    return APIError(415, "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - accepted media types include: {', '.join(accepted)}")


def _finite(text: str) -> float:
    v = float(text)
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError(f"the number {text[:20]} is out of range")
    return v


def _json_body(req: Request, allow_empty: bool = False, media: tuple[str, ...] = BODY_MEDIA) -> Any:
    """Decode a request body in one of ``media``: 415 for another media type, 400 for a body that does not decode,
    nests deeper than MAX_DEPTH or expands YAML aliases beyond its own size (the 'billion laughs')."""
    ct = media_type(req)
    if not req.body.strip():
        if allow_empty:
            return None
        if ct not in media:
            raise unsupported_media(media)
        raise errors.bad_request("the request body is empty")
    if ct not in media:
        raise unsupported_media(media)
    try:
        if ct == protobuf.MEDIA_TYPE:
            obj = protobuf.decode(req.body)
        elif ct.endswith("yaml"):
            obj = yaml.safe_load(req.body)
        else:
            obj = json.loads(req.body, parse_float=_finite, parse_constant=_finite)
    except (ValueError, yaml.YAMLError, UnicodeDecodeError, RecursionError) as exc:
        why = "it is nested too deeply" if isinstance(exc, RecursionError) else (str(exc).splitlines() or [""])[0][:200]
        raise errors.bad_request(f"the body of the request could not be decoded: {why}") from None
    # a protobuf body grows by Go's zero values (an empty message field becomes its struct), never by aliases
    _check_shape(obj, len(req.body) * (protobuf.EXPANSION if ct == protobuf.MEDIA_TYPE else 1))
    return obj


def _check_shape(obj: Any, size: int) -> None:
    """Iteratively: depth ≤ MAX_DEPTH, and no more values than the body has bytes (aliases expanding)."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    seen = 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if depth > MAX_DEPTH:
            raise errors.bad_request(f"the body of the request could not be decoded: it nests deeper than {MAX_DEPTH} levels")
        if seen > size + 16:
            raise errors.bad_request("the body of the request could not be decoded: its YAML aliases expand beyond its size")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
            if not all(isinstance(k, str) for k in node):
                raise errors.bad_request("the body of the request could not be decoded: object keys must be strings")
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
        elif isinstance(node, float) and (node != node or node in (float("inf"), float("-inf"))):
            raise errors.bad_request("the body of the request could not be decoded: a number is out of range")
        elif not isinstance(node, (str, int, float, bool, type(None))):  # YAML dates, sets, binary
            raise errors.bad_request(f"the body of the request could not be decoded: {type(node).__name__} is not a JSON value")


OPTIONS_KIND = {"POST": "CreateOptions", "PUT": "UpdateOptions", "PATCH": "PatchOptions", "DELETE": "DeleteOptions"}


def _check_write_options(req: Request) -> None:
    """dryRun, fieldValidation and propagationPolicy hold only the values kube-apiserver accepts; anything else is its
    422 (``CreateOptions.meta.k8s.io "" is invalid: dryRun: Unsupported value: ["x"]: supported values: "All"``)."""
    kind = OPTIONS_KIND.get(req.method)
    if kind is None:
        return
    causes = []
    dry = req.q("dryRun")
    if dry and dry != "All":
        causes.append(("dryRun", f'Unsupported value: ["{dry}"]: supported values: "All"'))
    fv = req.q("fieldValidation")
    if kind != "DeleteOptions" and fv not in ("", "Ignore", "Strict", "Warn"):
        causes.append(("fieldValidation", f'Unsupported value: "{fv}": supported values: "", "Ignore", "Strict", "Warn"'))
    pp = req.q("propagationPolicy")
    if kind == "DeleteOptions" and pp and pp not in ("Foreground", "Background", "Orphan"):
        causes.append(("propagationPolicy", f'Unsupported value: "{pp}": supported values: "Foreground", "Background", "Orphan"'))
    if causes:
        raise errors.invalid(kind, "", [{"reason": "FieldValueNotSupported", "message": m, "field": f} for f, m in causes],
                             "meta.k8s.io")


JOB_DELETE_WARNING = ("child pods are preserved by default when jobs are deleted; set propagationPolicy=Background to "
                      "remove them or set propagationPolicy=Orphan to suppress this warning")
ORPHAN_BY_DEFAULT = (("", "ReplicationController"), ("batch", "Job"))  # their strategies' DefaultGarbageCollectionPolicy


def _delete_propagation(req: Request, opts: dict[str, Any]) -> tuple[str | None, bool | None]:
    """(propagationPolicy, orphanDependents) from the query or the DeleteOptions body; 422 for a bad value or both."""
    policy = req.q("propagationPolicy") or opts.get("propagationPolicy")
    orphan: Any = opts.get("orphanDependents")
    if req.q("orphanDependents"):
        orphan = req.q("orphanDependents").lower() in ("1", "true")
    causes = []
    if policy is not None and policy not in ("Foreground", "Background", "Orphan"):
        causes.append(("propagationPolicy", f'Unsupported value: {json.dumps(policy)[:60]}: supported values: '
                                            '"Foreground", "Background", "Orphan"', "FieldValueNotSupported"))
    elif policy is not None and orphan is not None:
        causes.append(("propagationPolicy", f'Invalid value: "{policy}": orphanDependents and deletionPropagation '
                                            "cannot be both set", "FieldValueInvalid"))
    if orphan is not None and not isinstance(orphan, bool):
        raise errors.bad_request(f"orphanDependents must be a boolean, not {json.dumps(orphan)[:40]}")
    if causes:
        raise errors.invalid("DeleteOptions", "", [{"reason": r, "message": m, "field": f} for f, m, r in causes],
                             "meta.k8s.io")
    return policy, orphan


def _gc_finalizers(rtype: ResourceType, current: list[str], policy: str | None, orphan: bool | None) -> list[str]:
    """deletionFinalizersForGarbageCollection: the ``orphan`` or ``foregroundDeletion`` finalizer a DELETE leaves."""
    if orphan is not None:
        orphaning, foreground = orphan, False
    elif policy is not None:
        orphaning, foreground = policy == "Orphan", policy == "Foreground"
    elif "orphan" in current:
        orphaning, foreground = True, False
    elif "foregroundDeletion" in current:
        orphaning, foreground = False, True
    else:
        orphaning, foreground = (rtype.group, rtype.kind) in ORPHAN_BY_DEFAULT, False
    out = [f for f in current if f not in ("orphan", "foregroundDeletion")]
    if orphaning:
        out.append("orphan")
    elif foreground:
        out.append("foregroundDeletion")
    return out


def _int_param(req: Request, name: str, default: int) -> int:
    text = req.q(name)
    if text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise errors.bad_request(f'{name}: Invalid value: "{text[:60]}": must be an integer') from None


def _decode(req: Request, rtype: ResourceType) -> dict[str, Any]:
    obj = _json_body(req)
    if not isinstance(obj, dict):
        raise errors.bad_request(f"the body must be a {rtype.kind} object, not {type(obj).__name__}")
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if api_version and api_version != rtype.group_version:
        raise errors.bad_request(f"the API version in the data ({api_version}) does not match the expected API version ({rtype.group_version})")
    if kind and kind != rtype.kind:
        raise errors.bad_request(f"the kind in the data ({kind}) does not match the expected kind ({rtype.kind})")
    validation = strict.directive(req.q("fieldValidation"))
    if validation != "Ignore":  # unknown and duplicate fields against the kind's OpenAPI definition (`strict`)
        errs = strict.decode_errors(req.body, media_type(req), rtype.group, rtype.version, rtype.kind, obj)
        if errs and validation == "Strict":
            raise errors.bad_request(strict.strict_message(rtype.kind, rtype.version, errs))
        req.warnings += strict.warnings_of(errs)
    strict.drop_unknown(rtype.group, rtype.version, rtype.kind, obj)  # as decoding into the kind's type does
    return obj


def _metadata(obj: dict[str, Any]) -> dict[str, Any]:
    """The object's metadata (made empty when absent or null); 400 when it is something else."""
    if obj.get("metadata") is None:
        obj["metadata"] = {}
    if not isinstance(obj["metadata"], dict):
        raise errors.bad_request(f"metadata must be an object, not {type(obj['metadata']).__name__}")
    return obj["metadata"]


def _patch_sets_rv(body: Any) -> bool:
    return isinstance(body, dict) and bool((body.get("metadata") or {}).get("resourceVersion"))


# -- HTTP -----------------------------------------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kperflab-lab"
    api: APIServer

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s " + fmt, self.address_string(), *args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors the HTTP layer finds before a request reaches the API (a malformed request line, headers too large, an
        unknown method) get a Status too; an unknown method is 405, as kube-apiserver answers it."""
        reasons = {400: "BadRequest", 405: "MethodNotAllowed", 408: "Timeout", 413: "RequestEntityTooLarge",
                   414: "RequestURITooLong", 431: "RequestHeaderFieldsTooLarge"}
        if code == 501:
            code, message = 405, "the server does not allow this method on the requested resource"
        elif code == 505:
            code, message = 400, f"unsupported HTTP version: {message or ''}"
        if not self.request_version.startswith("HTTP/1."):
            self.request_version = "HTTP/1.1"  # a garbled request line still gets a status line and headers
        status = APIError(code, reasons.get(code, "BadRequest"), message or "bad request").status()
        body = (json.dumps(status, separators=(",", ":")) + "\n").encode()
        self.close_connection = True
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _serve(self) -> None:
        url = urlsplit(self.path)
        m = STREAM_PATH.match(url.path)
        if m and self.api.streaming is not None:
            self._stream(m.group("ns"), m.group("name"), m.group("sub"), parse_qs(url.query, keep_blank_values=True))
            return
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        length = self.headers.get("Content-Length")
        body = b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
            if body is None:
                return
        elif length:
            try:
                n = int(length)
            except ValueError:
                n = -1
            if n < 0:
                self.close_connection = True  # the stream's framing is lost: nothing after this can be read
                self._send(Response(400, errors.bad_request("invalid Content-Length").status()))
                return
            if n > MAX_BODY:
                left = n if n <= 16 * MAX_BODY else 0  # drain a moderately large body so the client reads the answer
                while left > 0:
                    chunk = self.rfile.read(min(left, 1 << 16))
                    if not chunk:
                        break
                    left -= len(chunk)
                self.close_connection = True
                self._send(Response(413, APIError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {MAX_BODY}").status()))
                return
            body = self.rfile.read(n)
        resp = self.api.handle(Request(self.command, url.path, query, headers, body, shared=True))
        self._send(resp)

    def _stream(self, namespace: str, name: str, sub: str, query: dict[str, list[str]]) -> None:
        """``pods/exec``, ``pods/attach``, ``pods/portforward``: authenticate, find the pod, then the connection is the
        session's (`streams`) until it ends."""
        from . import streams

        try:
            auth = self.headers.get("Authorization", "")
            user = self.api.authn.user(auth[7:].strip()) if auth.lower().startswith("bearer ") else None
            if user is None:
                raise errors.unauthorized()
            self.api.authorize(user, self.command, urlsplit(self.path).path, {k: v[-1] for k, v in query.items()})
            if self.command not in ("GET", "POST"):
                raise errors.method_not_allowed()
            pod = self.api.store.get("v1/pods", namespace, name, "pods")
            if sub == "portforward":
                streams.serve_portforward(self, query, lambda port: self.api.streaming.dial(pod, port),
                                          pod=f"{namespace}/{name}", uid=pod["metadata"]["uid"])
                return
            options = streams.parse_exec_options(query, attach=sub == "attach")
            if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                raise errors.bad_request(f"cannot {sub} into a container in a completed pod; current phase is "
                                         f"{pod['status']['phase']}")
            run = self.api.streaming.attach_session if sub == "attach" else self.api.streaming.exec_session
            streams.serve_remotecommand(self, options, lambda opts: run(pod, opts))
        except APIError as exc:
            streams.send_status(self, exc)
        finally:
            self.close_connection = True

    def _read_chunked(self) -> bytes | None:
        out = bytearray()
        while True:
            line = self.rfile.readline(100)
            try:
                size = int(line.split(b";")[0].strip() or b"x", 16)
            except ValueError:
                self.close_connection = True
                self._send(Response(400, errors.bad_request("malformed chunked body").status()))
                return None
            if size == 0:
                self.rfile.readline(100)
                return bytes(out)
            if len(out) + size > MAX_BODY:
                self.close_connection = True
                self._send(Response(413, APIError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {MAX_BODY}").status()))
                return None
            out += self.rfile.read(size)
            self.rfile.readline(10)

    def _send(self, resp: Response) -> None:
        accept = self.headers.get("Accept", "")
        if resp.stream is not None:
            self.send_response(resp.code)
            self.send_header("Content-Type", resp.content_type)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache, private")
            for k, v in resp.headers.items():
                self.send_header(k, v)
            self.end_headers()
            try:
                for chunk in resp.stream:
                    if chunk:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
                self.close_connection = True
            finally:
                close = getattr(resp.stream, "close", None)
                if close:
                    close()
            return
        if isinstance(resp.body, (dict, list)):
            if "application/yaml" in accept.split(",")[0]:
                data, ctype = yaml.safe_dump(resp.body, sort_keys=False).encode(), "application/yaml"
            elif resp.raw is not None:  # the same bytes, encoded once by the store or the server's cache
                data, ctype = resp.raw(), "application/json"
            else:
                # as kube-apiserver's encoder (Go's json.Encoder): compact, and a newline after the object
                data, ctype = (json.dumps(resp.body, separators=(",", ":")) + "\n").encode(), "application/json"
        elif isinstance(resp.body, str):
            data, ctype = resp.body.encode(), resp.content_type
        else:
            data, ctype = resp.body or b"", resp.content_type
        self.send_response(resp.code)
        headers = {k.lower() for k in resp.headers}
        if resp.code == 304:  # as Go's http.ServeContent: no body, no Content-Type/Length
            data = b""
        else:
            if "content-type" not in headers:
                self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
        if "cache-control" not in headers:
            self.send_header("Cache-Control", "no-cache, private")
        for k, v in resp.headers.items():  # Warning, ETag, Location, …
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], handler: type, context: ssl.SSLContext) -> None:
        super().__init__(addr, handler)
        self.context = context

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = self.socket.accept()
        # as Go's net package does for kube-apiserver: no Nagle, so a watch event is not held back behind the
        # previous one's ACK (a client's delayed ACK would add up to 40 ms)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # the handshake happens in the request thread, so one slow client cannot stall accept()
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


def serve(api: APIServer, cert: str, key: str, port: int = 0, host: str = "127.0.0.1") -> tuple[_TLSServer, threading.Thread]:
    """Start HTTPS on host:port in a thread; return the server (``.server_address`` has the port)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    handler = type("Handler", (_Handler,), {"api": api})
    server = _TLSServer((host, port), handler, ctx)
    api.address = f"{host}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="apiserver", daemon=True)
    thread.start()
    return server, thread
