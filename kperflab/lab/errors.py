"""Kubernetes `Status` errors, with the codes and reasons kube-apiserver uses."""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    """Raised anywhere in the lab's request path; the API server turns it into a Status object."""

    def __init__(self, code: int, reason: str, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code  # metav1.Status's field order: ... reason, details, code
        return body


def _details(kind: str, name: str, group: str = "") -> dict[str, Any]:
    d: dict[str, Any] = {"name": name}  # metav1.StatusDetails's field order: name, group, kind
    if group:
        d["group"] = group
    d["kind"] = kind
    return d


def qualified(kind: str, group: str) -> str:
    return f"{kind}.{group}" if group else kind


def not_found(kind: str, name: str, group: str = "") -> APIError:
    return APIError(404, "NotFound", f'{qualified(kind, group)} "{name}" not found', details=_details(kind, name, group))


def already_exists(kind: str, name: str, group: str = "") -> APIError:
    return APIError(409, "AlreadyExists", f'{qualified(kind, group)} "{name}" already exists',
                    details=_details(kind, name, group))


def conflict(kind: str, name: str, group: str = "", why: str = "") -> APIError:
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return APIError(409, "Conflict", f'Operation cannot be fulfilled on {qualified(kind, group)} "{name}": {why}',
                    details=_details(kind, name, group))


def invalid(kind: str, name: str, causes: list[dict[str, str]], group: str = "") -> APIError:
    text = "; ".join(f"{c['field']}: {c['message']}" for c in causes)
    # kube-apiserver: `Pod "x" is invalid: [a: Invalid value: ..., b: Required value]` (brackets for several)
    text = f"[{text}]" if len(causes) > 1 else text
    d = _details(kind, name, group)
    d["causes"] = causes
    return APIError(422, "Invalid", f'{qualified(kind, group)} "{name}" is invalid: {text}', details=d)


def bad_request(message: str) -> APIError:
    return APIError(400, "BadRequest", message)


def gone(message: str) -> APIError:
    return APIError(410, "Expired", message)


def method_not_allowed(message: str = "the server does not allow this method on the requested resource") -> APIError:
    return APIError(405, "MethodNotAllowed", message, details={})


def unauthorized() -> APIError:
    return APIError(401, "Unauthorized", "Unauthorized")
