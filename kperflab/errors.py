"""The small error hierarchy of kperflab.

Every message ends with the next step a person should take. The CLI prints ``str(error)`` on one
line and exits non-zero; it never shows a traceback for these. Neither does a notebook: IPython renders an exception
with a ``_render_traceback_`` method by what that method returns (Jupyter and papermill show those lines), so a
KperflabError in a cell is its message and its next step, not forty lines of the client's and urllib3's frames.
"""

from __future__ import annotations


class KperflabError(Exception):
    """Base class: a problem a user can fix, with the fix in the message."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message} {hint}".strip() if hint else message)

    def _render_traceback_(self) -> list[str]:
        """What IPython shows for this error in a cell (instead of the traceback): the error and the next step."""
        red, bold, off = "\x1b[0;31m", "\x1b[1m", "\x1b[0m"
        lines = [f"{red}{type(self).__name__}{off}: {self.message}"]
        if self.hint:
            lines.append(f"{bold}Next step:{off} {self.hint}")
        return lines


class ConfigError(KperflabError):
    """No kubeconfig, or one that cannot be read."""


class ClusterUnreachable(KperflabError):
    """The API server did not answer (refused, timed out, TLS failed)."""

    def __init__(self, server: str, reason: str, *, hint: str | None = None) -> None:
        self.server = server
        self.reason = reason
        super().__init__(
            f"The API server at {server} is not reachable ({reason}).",
            hint=hint or "Start the lab with `kperflab lab up`, or check the server address in your kubeconfig.",
        )


class PermissionDenied(KperflabError):
    """The cluster answered 401/403."""

    def __init__(self, verb: str, resource: str, *, status: int = 403, detail: str = "") -> None:
        self.verb = verb
        self.resource = resource
        self.status = status
        what = "not authenticated (401)" if status == 401 else f"not allowed to {verb} {resource} (403)"
        hint = (
            "Refresh your credentials (the token or client certificate in your kubeconfig)."
            if status == 401
            else f"Ask your instructor for RBAC access to {verb} {resource} (see kperflab/manifests/participant-rbac.yaml)."
        )
        super().__init__(f"The cluster says you are {what}{': ' + detail if detail else ''}.", hint=hint)


class MetricsUnavailable(KperflabError):
    """A metrics endpoint is missing or failed."""

    def __init__(self, endpoint: str, status: int | None = None, *, hint: str | None = None) -> None:
        self.endpoint = endpoint
        self.status = status
        code = f" (HTTP {status})" if status else ""
        super().__init__(
            f"Metrics are not available from {endpoint}{code}.",
            hint=hint or "Install metrics-server (on kind add --kubelet-insecure-tls) or use the lab (`kperflab lab up`).",
        )


class ExperimentFailed(KperflabError):
    """An experiment could not finish; ``step`` says where."""

    def __init__(self, step: str, detail: str, *, hint: str | None = None) -> None:
        self.step = step
        self.detail = detail
        super().__init__(f"The experiment failed at '{step}': {detail}.", hint=hint or "Run `kperflab doctor` to check the cluster.")


class BadInput(KperflabError, ValueError):
    """An argument that cannot work (a negative size, a CPU limit that is not a quantity)."""


class LabError(KperflabError):
    """The embedded lab could not start, stop or answer."""


class PrometheusUnavailable(MetricsUnavailable):
    """No Prometheus answers where kperflab looked: no such Service, no ready pod behind it, or a URL that does not
    answer. A `MetricsUnavailable`, so an experiment that needs Prometheus is skipped with this reason."""

    def __init__(self, where: str, reason: str, *, status: int | None = None, hint: str | None = None) -> None:
        self.endpoint = self.where = where
        self.reason = reason
        self.status = status
        KperflabError.__init__(self, f"No Prometheus answers at {where} ({reason}).", hint=hint or (
            "Install one: in the lab `kperflab lab up --prometheus`, on another cluster "
            "`kubectl apply -f kperflab/manifests/prometheus.yaml`; or name yours with "
            "prometheus=\"namespace/service:port\" (or the URL of a `kubectl port-forward`)."))
