"""Connect to a cluster through the official `kubernetes` client and learn what it is.

This module never imports :mod:`kperflab.lab`: the lab is just another cluster behind a kubeconfig.
Errors are translated into :mod:`kperflab.errors` with the next step in the message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import kubeconfig as kc
from .errors import ClusterUnreachable, ConfigError, KperflabError, PermissionDenied

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
            return Connection(client.ApiClient(cfg), None, "in-cluster", cfg.host, ns, source="in-cluster service account",
                              origin="in-cluster")
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
    cfg.retries = 0
    cfg.connection_pool_maxsize = POOL_SIZE
    ctx = next(c for c in loaded.config["contexts"] if c.get("name") == chosen)
    ns = ((ctx.get("context") if isinstance(ctx.get("context"), dict) else None) or {}).get("namespace") or "default"
    conn = Connection(client.ApiClient(cfg), loaded.value, chosen, cfg.host, ns, source=loaded.describe(),
                      origin="lab" if loaded.source.startswith("the lab's") else loaded.source)
    conn.extra["timeout"] = timeout
    return conn


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def translate(exc: BaseException, server: str, *, verb: str = "get", resource: str = "the API") -> KperflabError:
    """Turn a client/urllib3 exception into a kperflab error with a next step."""
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, KperflabError):
        return exc
    if isinstance(exc, ApiException):
        if exc.status in (401, 403):
            return PermissionDenied(verb, resource, status=exc.status, detail=_status_message(exc))
        return KperflabError(
            f"The API server answered {exc.status} {exc.reason} to {verb} {resource}: {_status_message(exc)}.",
            hint="Run `kperflab doctor` to check the cluster.",
        )
    reason = _one_line(exc)
    low = str(exc).lower()
    if "certificate" in low or "ssl" in low:
        reason = "TLS failed: " + ("certificate verify failed" if "verify failed" in low else reason)
        hint = "The server's certificate does not match the CA in your kubeconfig; write the kubeconfig again (`kperflab lab up` does it for the lab)."
        return ClusterUnreachable(server, reason, hint=hint)
    if "refused" in low:
        reason = "connection refused"
    elif "timed out" in low or "timeout" in low:
        reason = "timed out"
    elif "name or service not known" in low or "nodename nor servname" in low:
        reason = "unknown host"
    return ClusterUnreachable(server, reason)


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
