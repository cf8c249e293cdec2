"""Connect to a cluster through the official `kubernetes` client and learn what it is.

This module never imports :mod:`kperflab.lab`: the lab is just another cluster behind a kubeconfig.
Errors are translated into :mod:`kperflab.errors` with the next step in the message.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import kubeconfig as kc
from .errors import ClusterUnreachable, ConfigError, KperflabError, PermissionDenied
from .paths import LAB_CONTEXT

DEFAULT_TIMEOUT = 5.0
POOL_SIZE = 32  # connections kept per host: the sampler reads many nodes at once

FLAVOURS = ("kperflab-lab", "kind", "minikube", "k3s", "eks", "gke", "aks", "unknown")


@dataclass
class Connection:
    """An API client plus what we know of where it points."""

    api: Any  # kubernetes.client.ApiClient
    kubeconfig: str | None  # the kubeconfig file(s) as a KUBECONFIG value (None: in-cluster)
    context: str | None
    server: str
    namespace: str = "default"
    source: str = ""  # which files, chosen how (for `kperflab doctor`)
    origin: str = ""  # how they were chosen: "--kubeconfig", "KUBECONFIG", "~/.kube/config", "lab", "in-cluster"
    extra: dict[str, Any] = field(default_factory=dict)

    def kubectl_env(self) -> dict[str, str]:
        """The environment that makes kubectl read the same kubeconfig(s)."""
        env = dict(os.environ)
        if self.kubeconfig:
            env["KUBECONFIG"] = self.kubeconfig
        return env


def load(kubeconfig: str | os.PathLike[str] | None = None, context: str | None = None,
         timeout: float = DEFAULT_TIMEOUT) -> Connection:
    """Load the kubeconfig kubectl would use (see `kperflab.kubeconfig`), else the in-cluster config, else the
    lab's kubeconfig, into an API client. Raises :class:`ConfigError` naming the file and the next step."""
    from kubernetes import client, config

    loaded = kc.load(kubeconfig)
    if loaded is None:
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            cfg = client.Configuration()
            try:
                config.load_incluster_config(client_configuration=cfg)
            except Exception as exc:  # noqa: BLE001 - a pod without a service account token
                raise ConfigError(f"In a pod, but the in-cluster config cannot be used ({_one_line(exc).rstrip('.')}).",
                                  hint="Mount a service account token (automountServiceAccountToken), or point "
                                       "KUBECONFIG at a kubeconfig.") from None
            cfg.retries = 0
            cfg.connection_pool_maxsize = POOL_SIZE
            ns_file = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
            ns = ns_file.read_text().strip() if ns_file.exists() else "default"
            return Connection(guard(client.ApiClient(cfg), cfg.host), None, "in-cluster", cfg.host, ns,
                              source="in-cluster service account", origin="in-cluster")
        loaded = kc.load_lab()
    if loaded is None:
        raise ConfigError("No kubeconfig found (KUBECONFIG is not set, and there is no ~/.kube/config nor a lab's).",
                          hint=kc.NO_CLUSTER_HINT)
    names = loaded.contexts()
    where = ", ".join(str(f) for f in loaded.files)
    if context and context not in names:
        raise ConfigError(f"The context '{context}' is not in {where} (it has: {', '.join(map(str, names)) or 'none'}).",
                          hint="Pick one of those with --context, or run `kubectl config get-contexts`.")
    chosen = context or loaded.current_context()
    if not chosen:
        raise ConfigError(f"{where} sets no current context.",
                          hint=f"Pick one with --context ({', '.join(map(str, names)) or 'it has none'}), or "
                               "`kubectl config use-context NAME`.")
    if chosen not in names:
        raise ConfigError(f"The current context '{chosen}' of {where} is not one of its contexts "
                          f"({', '.join(map(str, names)) or 'none'}).", hint="Fix it with `kubectl config use-context NAME`.")
    cfg = client.Configuration()
    try:
        config.load_kube_config_from_dict(loaded.config, context=chosen, client_configuration=cfg, persist_config=False)
    except Exception as exc:  # noqa: BLE001 - any loader failure is a config problem for the user
        raise ConfigError(
            f"The kubeconfig {where} cannot be used ({_one_line(exc)}).",
            hint="Check the context's cluster and user entries with `kubectl config view`.",
        ) from None
    cfg.retries = 0  # no urllib3 retries: a dead server is said at once, without "Retrying (Retry(total=2…" warnings
    cfg.connection_pool_maxsize = POOL_SIZE
    ctx = next(c for c in loaded.config["contexts"] if c.get("name") == chosen)
    body = (ctx.get("context") if isinstance(ctx.get("context"), dict) else None) or {}
    ns = body.get("namespace") or "default"
    lab = loaded.source.startswith("the lab's") or body.get("cluster") == LAB_CONTEXT
    conn = Connection(guard(client.ApiClient(cfg), cfg.host, lab), loaded.value, chosen,
                      cfg.host, ns, source=loaded.describe(),
                      origin="lab" if loaded.source.startswith("the lab's") else loaded.source)
    conn.extra["timeout"] = timeout
    return conn


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def down_hint(lab: bool) -> str:
    """The next step when the API server does not answer: the lab's or any cluster's check, then again (in a
    notebook: the cell)."""
    import sys

    again = "re-run the cell" if "ipykernel" in sys.modules else "run it again"
    if lab:
        return f"Is the lab up? Check with `kperflab lab status` (start it with `kperflab lab up`), then {again}."
    return f"Is the cluster up and reachable? Check with `kubectl cluster-info` or `kperflab doctor`, then {again}."


TLS_HINT = ("The server's certificate does not match the CA in your kubeconfig; write the kubeconfig again "
            "(`kperflab lab up` does it for the lab).")


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` says the API server did not answer at all (refused, reset, closed mid-answer, timed out, TLS
    cut or refused): urllib3's errors, the socket's, and the client's ``ApiException(status=0)`` for a TLS error."""
    import http.client

    import urllib3.exceptions as u3

    if isinstance(exc, ClusterUnreachable):
        return True
    if isinstance(exc, KperflabError):
        return False
    if type(exc).__name__ == "ApiException":
        return getattr(exc, "status", None) == 0 and "SSLError" in str(getattr(exc, "reason", ""))
    return isinstance(exc, (u3.MaxRetryError, u3.ProtocolError, u3.NewConnectionError, u3.TimeoutError, u3.SSLError,
                            u3.ProxyError, ConnectionError, TimeoutError, ssl.SSLError, http.client.HTTPException,
                            OSError))


def _cause(exc: BaseException) -> BaseException:
    """The innermost cause urllib3 wraps (MaxRetryError.reason, ProtocolError's args, __cause__/__context__)."""
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = getattr(exc, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((a for a in getattr(exc, "args", ()) if isinstance(a, BaseException)), None)
        if not isinstance(inner, BaseException):
            inner = exc.__cause__ or exc.__context__
        if not isinstance(inner, BaseException):
            break
        exc = inner
    return exc


def unreachable(exc: BaseException, server: str, lab: bool = False) -> ClusterUnreachable:
    """``exc``, a failure to reach the API server, as a `ClusterUnreachable` naming the server, why in a few words and
    the next step (``lab``: the server is the kperflab lab's)."""
    import http.client

    if isinstance(exc, ClusterUnreachable):
        return exc
    inner = _cause(exc)
    low = f"{exc} {inner}".lower()
    if "certificate" in low and "verify failed" in low:
        return ClusterUnreachable(server, "TLS failed: certificate verify failed", hint=TLS_HINT)
    if isinstance(inner, ConnectionRefusedError) or "refused" in low:
        reason = "connection refused"
    elif isinstance(inner, ConnectionResetError) and not isinstance(inner, http.client.RemoteDisconnected) or "reset" in low:
        reason = "the connection was reset"
    elif isinstance(inner, http.client.RemoteDisconnected) or "remote end closed" in low or "disconnected" in low:
        reason = "the server closed the connection without answering"
    elif "eof" in low and ("ssl" in low or "tls" in low):
        reason = "the TLS connection was cut (EOF)"
    elif isinstance(inner, TimeoutError) or "timed out" in low or "timeout" in low:
        reason = "no answer in time"
    elif "name or service not known" in low or "nodename nor servname" in low or "temporary failure in name" in low:
        reason = "unknown host"
    elif "incompleteread" in low or "connection broken" in low or "connection aborted" in low:
        reason = "the connection broke mid-answer"
    elif "certificate" in low or "ssl" in low:
        return ClusterUnreachable(server, "TLS failed: " + _one_line(inner), hint=TLS_HINT)
    else:
        reason = _one_line(inner)
    return ClusterUnreachable(server, reason, hint=down_hint(lab))


def guard(api: Any, server: str, lab: bool = False) -> Any:
    """Make every request of this ApiClient — typed calls, ``call_api``, reading a body — raise `ClusterUnreachable`
    (from None: no urllib3 chain) when the API server does not answer, so that no code path of kperflab shows a
    urllib3 traceback, however it calls the client. ``lab``: the server is the lab's (the next step says so)."""
    rest = api.rest_client
    if getattr(rest, "_kperflab_guarded", False):
        return api
    request = rest.request

    def guarded_request(*args: Any, **kwargs: Any) -> Any:
        try:
            resp = request(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - only a lost connection is translated, the rest passes through
            if connection_lost(exc):
                raise unreachable(exc, server, lab) from None
            raise
        read = resp.read

        def guarded_read() -> Any:
            try:
                return read()
            except Exception as exc:  # noqa: BLE001
                if connection_lost(exc):
                    raise unreachable(exc, server, lab) from None
                raise

        resp.read = guarded_read
        return resp

    rest.request = guarded_request
    rest._kperflab_guarded = True
    return api


def translate(exc: BaseException, server: str, *, verb: str = "get", resource: str = "the API") -> KperflabError:
    """Turn a client/urllib3 exception into a kperflab error with a next step."""
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, KperflabError):
        return exc
    if connection_lost(exc):
        return unreachable(exc, server)
    if isinstance(exc, ApiException):
        if exc.status in (401, 403):
            return PermissionDenied(verb, resource, status=exc.status, detail=_status_message(exc))
        return KperflabError(
            f"The API server answered {exc.status} {exc.reason} to {verb} {resource}: {_status_message(exc)}.",
            hint="Run `kperflab doctor` to check the cluster.",
        )
    return KperflabError(f"The answer of the API server at {server} to {verb} {resource} could not be read "
                         f"({_one_line(exc)}).", hint="Run `kperflab doctor` to check the cluster.")


def _status_message(exc: Any) -> str:
    import json

    try:
        return json.loads(exc.body).get("message") or exc.reason
    except Exception:  # noqa: BLE001
        return str(exc.reason)


def server_version(conn: Connection, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """``/version`` as a dict (gitVersion, platform …)."""
    from kubernetes import client

    try:
        info = client.VersionApi(conn.api).get_code(_request_timeout=timeout)
    except Exception as exc:  # noqa: BLE001
        raise translate(exc, conn.server, resource="/version") from None
    return info.to_dict()


def get_raw(conn: Connection, path: str, timeout: float = DEFAULT_TIMEOUT, query: list | None = None,
            accept: str = "application/json") -> tuple[int, bytes]:
    """GET a raw API path with the kubeconfig's credentials: (HTTP status, body). Raises only when nothing answers."""
    try:
        method, url, headers, body, post = conn.api.param_serialize(
            "GET", path, query_params=query or [], header_params={"Accept": accept}, auth_settings=["BearerToken"])
        resp = conn.api.call_api(method, url, headers, body, post, _request_timeout=timeout)
        return resp.status, resp.read()
    except Exception as exc:  # noqa: BLE001
        raise translate(exc, conn.server, resource=path) from None


def get_json(conn: Connection, path: str, timeout: float = DEFAULT_TIMEOUT, query: list | None = None) -> Any:
    """GET a raw API path (with the kubeconfig's credentials) and decode its JSON body."""
    import json

    from kubernetes.client.exceptions import ApiException

    status, data = get_raw(conn, path, timeout, query)
    if not 200 <= status < 300:
        raise translate(ApiException(status=status, reason=_reason(status), body=data.decode(errors="replace")),
                        conn.server, resource=path)
    return json.loads(data)


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def git_version(version: dict[str, Any]) -> str:
    return str(version.get("git_version") or version.get("gitVersion") or "")


def metrics_api_version(conn: Connection, timeout: float = DEFAULT_TIMEOUT) -> str | None:
    """The metrics.k8s.io version to use, from discovery: v1 before v1beta1; None when not served."""
    groups = get_json(conn, "/apis", timeout)
    for group in groups.get("groups", []):
        if group.get("name") == "metrics.k8s.io":
            versions = [v.get("version") for v in group.get("versions", [])]
            for wanted in ("v1", "v1beta1"):
                if wanted in versions:
                    return wanted
            return versions[0] if versions else None
    return None


def metrics_hint(flavour: str) -> str:
    """How to get metrics.k8s.io served on this kind of cluster."""
    if flavour == "kind":
        return ("Install metrics-server: kubectl apply -f https://github.com/kubernetes-sigs/metrics-server/releases/latest/"
                "download/components.yaml and add --kubelet-insecure-tls to its args (kind's kubelets use self-signed certificates).")
    if flavour == "minikube":
        return "Run `minikube addons enable metrics-server`."
    if flavour == "kperflab-lab":
        return ("The lab serves metrics.k8s.io itself; if it is missing, this lab is older than this kperflab: "
                "run `kperflab lab down && kperflab lab up`.")
    return ("Install metrics-server: kubectl apply -f https://github.com/kubernetes-sigs/metrics-server/releases/latest/"
            "download/components.yaml")


def detect_flavour(version: dict[str, Any], nodes: list[dict[str, Any]]) -> str:
    """Name the kind of cluster from the version string, node labels and providerIDs.

    >>> detect_flavour({"git_version": "v1.30.2+k3s1"}, [])
    'k3s'
    >>> detect_flavour({"gitVersion": "v1.31.0"}, [{"spec": {"providerID": "kind://docker/kind/kind-control-plane"}}])
    'kind'
    """
    git = str(version.get("git_version") or version.get("gitVersion") or "")
    labels: dict[str, str] = {}
    providers: list[str] = []
    for node in nodes:
        labels.update((node.get("metadata") or {}).get("labels") or {})
        providers.append(str((node.get("spec") or {}).get("providerID") or (node.get("spec") or {}).get("provider_id") or ""))
    if "+kperflab" in git or labels.get("kperflab.dev/lab") == "true":
        return "kperflab-lab"
    if any(p.startswith("kind://") for p in providers):
        return "kind"
    if any(k.startswith("minikube.k8s.io/") for k in labels):
        return "minikube"
    if "+k3s" in git or labels.get("node.kubernetes.io/instance-type") == "k3s":
        return "k3s"
    if "-eks-" in git or any(p.startswith("aws://") for p in providers):
        return "eks"
    if "-gke." in git or any(p.startswith("gce://") for p in providers):
        return "gke"
    if any(p.startswith("azure://") for p in providers) or any(k.startswith("kubernetes.azure.com/") for k in labels):
        return "aks"
    return "unknown"


def list_nodes(conn: Connection, timeout: float = DEFAULT_TIMEOUT) -> list[dict[str, Any]]:
    return get_json(conn, "/api/v1/nodes", timeout).get("items", [])


def can_i(conn: Connection, verb: str, resource: str, *, subresource: str = "", namespace: str = "",
          group: str = "", timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Ask the server with a SelfSubjectAccessReview whether we may ``verb`` the ``resource``."""
    from kubernetes import client

    body = client.V1SelfSubjectAccessReview(
        spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(
                verb=verb, resource=resource, subresource=subresource or None,
                namespace=namespace or None, group=group or None,
            )
        )
    )
    try:
        review = client.AuthorizationV1Api(conn.api).create_self_subject_access_review(body, _request_timeout=timeout)
    except Exception as exc:  # noqa: BLE001
        raise translate(exc, conn.server, verb="create", resource="selfsubjectaccessreviews") from None
    return bool(review.status and review.status.allowed)


MANAGED_BY = "app.kubernetes.io/managed-by"


def whoami(conn: Connection, timeout: float = DEFAULT_TIMEOUT) -> str | None:
    """The user name the API server says we are (a SelfSubjectReview, authentication.k8s.io/v1, Kubernetes ≥ 1.28),
    or None where the server does not say (older clusters, or not allowed)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        review = client.AuthenticationV1Api(conn.api).create_self_subject_review(client.V1SelfSubjectReview(),
                                                                                  _request_timeout=timeout)
    except ApiException as exc:
        if exc.status in (403, 404, 405, 415):
            return None
        raise translate(exc, conn.server, verb="create", resource="selfsubjectreviews") from None
    except Exception as exc:  # noqa: BLE001
        raise translate(exc, conn.server, verb="create", resource="selfsubjectreviews") from None
    info = review.status.user_info if review.status else None
    return info.username if info and info.username else None
