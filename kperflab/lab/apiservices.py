"""APIService (``apiregistration.k8s.io/v1``) as kube-apiserver's aggregator stores it: validation, defaults and the
status a local APIService gets at creation, with kube-aggregator's wording (pkg/apis/apiregistration/validation,
v1/defaults.go, pkg/registry/apiservice/strategy.go).

`AvailabilityController` is kube-aggregator's remote availability controller
(pkg/controllers/status/remote): for an APIService naming a Service it sets the ``Available`` condition from the
Service (``ServiceNotFound``, ``ServicePortError``), its EndpointSlices (``EndpointsNotFound``, ``MissingEndpoints``)
and a GET of ``https://<clusterIP>:<port>/apis/<group>/<version>`` from the lab's node network namespace
(``FailedDiscoveryCheck``, else ``Passed``: "all checks passed"), re-checked every 30 s and whenever the Service or
its endpoints change.

What the lab does not do: proxy an aggregated API. An APIService is stored and served as an object (``kubectl get
apiservices``, the official client's ``ApiregistrationV1Api``) and its availability is checked as upstream does, but
its group is not added to discovery and no request is forwarded to its Service; the lab serves no APIService objects
of its own built-in groups (kube-apiserver's autoregistration creates ``v1.``, ``v1.apps``, ... as ``Local``).

>>> obj = {"metadata": {"name": "v1alpha1.wardle.k8s.io"}, "spec": {"group": "wardle.k8s.io", "version": "v1alpha1",
...        "groupPriorityMinimum": 1000, "versionPriority": 15, "service": {"name": "api", "namespace": "wardle"}}}
>>> default(obj); obj["spec"]["service"]["port"], validate(obj)
(443, [])
>>> obj["spec"]["versionPriority"] = 0
>>> [c["message"] for c in validate(obj)]
['Invalid value: 0: must be positive and less than 1000']
"""

from __future__ import annotations

import base64
import binascii
import http.client
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from . import errors
from . import validation as val
from .store import Store, rfc3339

log = logging.getLogger("kperflab.lab.apiservices")
KEY = "apiregistration.k8s.io/v1/apiservices"
RESYNC = 30.0  # the controller's resync: a passing or failing discovery check is done again this often

Obj = dict[str, Any]


def default(obj: Obj) -> None:
    """SetDefaults_ServiceReference: ``spec.service.port`` 443."""
    spec = obj.get("spec")
    if isinstance(spec, dict) and isinstance(spec.get("service"), dict):
        spec["service"].setdefault("port", 443)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _name(field: str, name: str, required: str) -> list[val.Cause]:
    """ValidateObjectMeta's name check with the aggregator's function: a path segment name that is version.group."""
    if name in (".", ".."):
        return [val.invalid_value(field, name, f"may not be '{name}'")]
    bad = [f"may not contain '{c}'" for c in ("/", "%") if c in name]
    if bad:
        return [val.invalid_value(field, name, m) for m in bad]
    if name != required:
        return [val.invalid_value(field, name, f'must be `spec.version+"."+spec.group`: "{required}"')]
    return []


def validate(obj: Obj) -> list[val.Cause]:
    """ValidateAPIService."""
    meta = obj.get("metadata")
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    group, version = str(spec.get("group") or ""), str(spec.get("version") or "")
    out = [c for c in val.metadata(meta, namespaced=False) if c["field"] != "metadata.name"]
    name = meta.get("name") if isinstance(meta, dict) else None
    if not name:
        out.insert(0, val.cause("metadata.name", "Required value", "name or generateName is required"))
    elif isinstance(name, str):
        out[:0] = _name("metadata.name", name, f"{version}.{group}")
    if not group and version != "v1":
        out.append(val.cause("spec.group", "Required value", "only v1 may have an empty group and it better be legacy kube"))
    if group:
        out += val.dns_subdomain("spec.group", group)
    out += val.dns1035_label("spec.version", version)
    gpm, vp = _int(spec.get("groupPriorityMinimum")), _int(spec.get("versionPriority"))
    if gpm <= 0 or gpm > 20000:
        out.append(val.invalid_value("spec.groupPriorityMinimum", gpm, "must be positive and less than 20000"))
    if vp <= 0 or vp > 1000:
        out.append(val.invalid_value("spec.versionPriority", vp, "must be positive and less than 1000"))
    ca = _ca_bytes(spec.get("caBundle"))
    skip = spec.get("insecureSkipTLSVerify") is True
    svc = spec.get("service")
    if not isinstance(svc, dict):
        if ca:
            out.append(val.invalid_value("spec.caBundle", f"{ca} bytes", "local APIServices may not have a caBundle"))
        if skip:
            out.append(val.invalid_value("spec.insecureSkipTLSVerify", True, "local APIServices may not have insecureSkipTLSVerify"))
        return out
    if not svc.get("namespace"):
        out.append(val.cause("spec.service.namespace", "Required value", ""))
    if not svc.get("name"):
        out.append(val.cause("spec.service.name", "Required value", ""))
    port = _int(svc.get("port"))
    if not 1 <= port <= 65535:
        out.append(val.invalid_value("spec.service.port", port, "port is not valid: must be between 1 and 65535, inclusive"))
    if skip and ca:
        out.append(val.invalid_value("spec.insecureSkipTLSVerify", True, "may not be true if caBundle is present"))
    return out


def _ca_bytes(value: Any) -> int:
    if not isinstance(value, str) or not value:
        return 0
    try:
        return len(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        return len(value)


def prepare_for_create(obj: Obj, now: str) -> None:
    """The strategy's PrepareForCreate: the status a client sent is dropped; a local APIService (no ``spec.service``)
    is available at once."""
    obj["status"] = {}
    if not isinstance((obj.get("spec") or {}).get("service"), dict):
        obj["status"]["conditions"] = [{"type": "Available", "status": "True", "lastTransitionTime": now,
                                        "reason": "Local", "message": "Local APIServices are always available"}]


def table_row(obj: Obj) -> tuple[str, str]:
    """SERVICE and AVAILABLE as kube-aggregator's ConvertToTable prints them."""
    svc = (obj.get("spec") or {}).get("service")
    service = f"{svc.get('namespace', '')}/{svc.get('name', '')}" if isinstance(svc, dict) else "Local"
    status = "Unknown"
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Available":
            s = c.get("status", "")
            status = s if s == "True" or not c.get("reason") else f"{s} ({c['reason']})"
            break
    return service, status


# -- kube-aggregator's remote availability controller ---------------------------------------------------------------

Condition = tuple[str, str, str]  # status, reason, message


def store_checks(apisvc: Obj, service: Obj | None, slices: list[Obj]) -> Condition | None:
    """The checks made from the API's objects (sync() before the discovery check): a condition when one fails, else
    None (the discovery check decides).

    >>> a = {"spec": {"service": {"namespace": "wardle", "name": "api", "port": 443}}}
    >>> store_checks(a, None, [])
    ('False', 'ServiceNotFound', 'service/api in "wardle" is not present')
    >>> svc = {"spec": {"type": "ClusterIP", "ports": [{"name": "https", "port": 443}]}}
    >>> store_checks(a, svc, [])
    ('False', 'EndpointsNotFound', 'cannot find endpointslices for service/api in "wardle"')
    >>> store_checks(a, svc, [{"endpoints": [{"addresses": ["10.244.0.9"], "conditions": {"ready": False}}],
    ...                       "ports": [{"name": "https", "port": 8443}]}])
    ('False', 'MissingEndpoints', 'endpointslices for service/api in "wardle" have no addresses with port name "https"')
    """
    ref = apisvc["spec"]["service"]
    name, ns, port = ref.get("name", ""), ref.get("namespace", ""), ref.get("port", 443)
    if service is None:
        return "False", "ServiceNotFound", f'service/{name} in "{ns}" is not present'
    spec = service.get("spec") or {}
    if spec.get("type", "ClusterIP") != "ClusterIP":
        return None
    match = next((p for p in spec.get("ports") or [] if p.get("port") == port), None)
    if match is None:
        return "False", "ServicePortError", f'service/{name} in "{ns}" is not listening on port {port}'
    port_name = match.get("name", "")
    if not slices:
        return "False", "EndpointsNotFound", f'cannot find endpointslices for service/{name} in "{ns}"'
    for sl in slices:
        ready = any((e.get("conditions") or {}).get("ready") is not False for e in sl.get("endpoints") or [])
        if ready and any(p.get("name", "") == port_name and p.get("port") is not None for p in sl.get("ports") or []):
            return None
    return "False", "MissingEndpoints", f'endpointslices for service/{name} in "{ns}" have no addresses with port name "{port_name}"'


def discovery_url(apisvc: Obj, service: Obj) -> tuple[str, str, int, str]:
    """(url, host, port, path) the ClusterIP service resolver gives (an ExternalName Service: its name)."""
    spec, ref = service.get("spec") or {}, apisvc["spec"]["service"]
    host = spec.get("externalName", "") if spec.get("type") == "ExternalName" else spec.get("clusterIP", "")
    port = int(ref.get("port", 443))
    path = f"/api/{apisvc['spec']['version']}" if apisvc["metadata"]["name"] == "v1." else \
        f"/apis/{apisvc['spec']['group']}/{apisvc['spec']['version']}"
    return f"https://{host}:{port}{path}", host, port, path


def endpoint_for(apisvc: Obj, service: Obj, slices: list[Obj]) -> tuple[str, int] | None:
    """Where kube-proxy sends a connection to the ClusterIP and port: a ready endpoint's address and the port of the
    same name in its slice (None: no such endpoint; an ExternalName Service: its name)."""
    spec = service.get("spec") or {}
    port = int(apisvc["spec"]["service"].get("port", 443))
    if spec.get("type") == "ExternalName":
        return spec.get("externalName", ""), port
    name = next((p.get("name", "") for p in spec.get("ports") or [] if p.get("port") == port), None)
    for sl in slices:
        target = next((p.get("port") for p in sl.get("ports") or [] if p.get("name", "") == name and p.get("port")), None)
        for e in sl.get("endpoints") or []:
            if target and e.get("addresses") and (e.get("conditions") or {}).get("ready") is not False:
                return e["addresses"][0], int(target)
    return None


def discovery_check(apisvc: Obj, service: Obj, target: tuple[str, int] | None = None, timeout: float = 5.0) -> Condition:
    """One GET of the discovery document, with the TLS settings of the APIService (its caBundle and the server name
    ``<service>.<namespace>.svc``, or insecureSkipTLSVerify); the calling thread's network namespace is used.
    ``target``: the endpoint the ClusterIP leads to (what kube-proxy's DNAT would pick), else the ClusterIP itself."""
    url, host, port, path = discovery_url(apisvc, service)
    spec, ref = apisvc["spec"], apisvc["spec"]["service"]
    if spec.get("insecureSkipTLSVerify"):
        ctx = ssl._create_unverified_context()  # noqa: S323 - what insecureSkipTLSVerify asks for
    else:
        ctx = ssl.create_default_context(cadata=_pem(spec.get("caBundle")) or None) if spec.get("caBundle") else \
            ssl.create_default_context()
    server_name = f"{ref.get('name')}.{ref.get('namespace')}.svc"
    try:
        sock = socket.create_connection(target or (host, port), timeout=timeout)
        try:
            tls = ctx.wrap_socket(sock, server_hostname=server_name)
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
            conn.sock = tls
            conn.request("GET", path, headers={"X-Remote-User": "system:kube-aggregator", "X-Remote-Group": "system:masters"})
            status = conn.getresponse().status
            conn.close()
        finally:
            sock.close()
    except TimeoutError:
        return "False", "FailedDiscoveryCheck", (f'failing or missing response from {url}: Get "{url}": context deadline '
                                                 "exceeded (Client.Timeout exceeded while awaiting headers)")
    except ConnectionRefusedError:
        return "False", "FailedDiscoveryCheck", (f'failing or missing response from {url}: Get "{url}": dial tcp '
                                                 f"{host}:{port}: connect: connection refused")
    except ssl.SSLCertVerificationError:
        return "False", "FailedDiscoveryCheck", (f'failing or missing response from {url}: Get "{url}": tls: failed to '
                                                 "verify certificate: x509: certificate signed by unknown authority")
    except ssl.SSLError as exc:
        why = "http: server gave HTTP response to HTTPS client" if exc.reason == "WRONG_VERSION_NUMBER" else \
            f"remote error: tls: {(exc.reason or 'handshake failure').lower().replace('_', ' ')}"
        return "False", "FailedDiscoveryCheck", f'failing or missing response from {url}: Get "{url}": {why}'
    except OSError as exc:
        return "False", "FailedDiscoveryCheck", f'failing or missing response from {url}: Get "{url}": {exc.strerror or exc}'
    if not 200 <= status < 300:
        return "False", "FailedDiscoveryCheck", f"bad status from {url}: {status}"
    return "True", "Passed", "all checks passed"


def _pem(ca_bundle: Any) -> str:
    try:
        return base64.b64decode(ca_bundle).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return ""


class AvailabilityController:
    """Sets ``status.conditions[type=Available]`` of every APIService that names a Service; ``in_node_netns`` runs a
    function where ClusterIPs are reachable (the lab's node network namespace)."""

    def __init__(self, store: Store, in_node_netns: Callable[[Callable[[], Condition]], Condition] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.in_node_netns = in_node_netns
        self.clock = clock
        self._checked: dict[str, tuple[str, float, Condition]] = {}  # name → (what was checked, when, result)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - one bad round must not end the controller
                log.exception("apiservice availability sync failed")
            stop.wait(1.0)

    def tick(self) -> None:
        items, *_ = self.store.list(KEY)
        for a in items:
            if isinstance((a.get("spec") or {}).get("service"), dict):
                self.sync(a)
        names = {a["metadata"]["name"] for a in items}
        for gone in set(self._checked) - names:
            del self._checked[gone]

    def sync(self, apisvc: Obj) -> None:
        ref = apisvc["spec"]["service"]
        ns, name = ref.get("namespace", ""), ref.get("name", "")
        service = self.store.try_get("v1/services", ns, name)
        slices, *_ = self.store.list("discovery.k8s.io/v1/endpointslices", ns,
                                     lambda o: (o["metadata"].get("labels") or {}).get("kubernetes.io/service-name") == name)
        cond = store_checks(apisvc, service, slices)
        if cond is None and service is not None:
            seen = repr((apisvc["spec"], service.get("spec"), [(s.get("endpoints"), s.get("ports")) for s in slices]))
            last = self._checked.get(apisvc["metadata"]["name"])
            if last is not None and last[0] == seen and self.clock() - last[1] < RESYNC:
                cond = last[2]
            else:
                target = endpoint_for(apisvc, service, slices)
                check = lambda: discovery_check(apisvc, service, target)  # noqa: E731
                cond = self.in_node_netns(check) if self.in_node_netns else check()
                self._checked[apisvc["metadata"]["name"]] = (seen, self.clock(), cond)
        if cond is not None:
            self._write(apisvc, cond)

    def _write(self, apisvc: Obj, cond: Condition) -> None:
        """SetAPIServiceCondition + updateAPIServiceStatus: only a change is written; lastTransitionTime moves with
        the status."""
        status, reason, message = cond
        conditions = [dict(c) for c in (apisvc.get("status") or {}).get("conditions") or []]
        old = next((c for c in conditions if c.get("type") == "Available"), None)
        if old is None:
            conditions.append({"type": "Available", "status": status, "lastTransitionTime": rfc3339(self.clock()),
                               "reason": reason, "message": message})
        else:
            if (old.get("status"), old.get("reason"), old.get("message")) == cond:
                return
            if old.get("status") != status:
                old["status"], old["lastTransitionTime"] = status, rfc3339(self.clock())
            old["reason"], old["message"] = reason, message
        new = {**apisvc, "status": {**(apisvc.get("status") or {}), "conditions": conditions}}
        try:
            self.store.update(KEY, new)
        except errors.APIError:  # changed or deleted meanwhile: the next round writes it
            pass
