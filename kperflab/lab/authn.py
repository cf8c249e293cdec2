"""Who is asking: the lab's bearer tokens and the identities they stand for.

The admin token (written to the lab's kubeconfig) is the user ``kperflab-admin`` in ``system:masters``. More users
come from a static token file in kube-apiserver's ``--token-auth-file`` format — one ``token,user,uid,"group1,group2"``
line each — at ``<state dir>/tokens.csv``, read again whenever it changes. Every authenticated user also gets the
group ``system:authenticated``. ServiceAccount tokens (JWTs of the lab's `satokens.TokenIssuer`) stand for
``system:serviceaccount:<ns>:<sa>`` while that ServiceAccount (and the pod a token is bound to) still exists with the
uid in the token, as kube-apiserver's service-account authenticator checks (``pkg/serviceaccount/claims.go``);
Secret-based tokens (issuer ``kubernetes/serviceaccount``) while their Secret holds them (``legacy.go``).
Requests without a token are ``system:anonymous`` in ``system:unauthenticated``. What a user may do is `rbac`'s
decision; the admin (``system:masters``) may do anything.
"""

from __future__ import annotations

import base64
import csv
import hmac
import io
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .satokens import LEEWAY, TokenInvalid


@dataclass(frozen=True)
class User:
    name: str
    uid: str
    groups: tuple[str, ...]
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def info(self) -> dict[str, object]:
        """``UserInfo`` as SelfSubjectReview and TokenReview report it."""
        out: dict[str, object] = {"username": self.name, "uid": self.uid, "groups": list(self.groups)}
        if self.extra:
            out["extra"] = {k: list(v) for k, v in self.extra}
        return out


ADMIN = User("kperflab-admin", "kperflab-admin", ("system:masters", "system:authenticated"))
ANONYMOUS = User("system:anonymous", "", ("system:unauthenticated",))
SA_PREFIX = "system:serviceaccount:"


def service_account_user(namespace: str, name: str, uid: str, extra: dict[str, str] | None = None) -> User:
    """A ServiceAccount's user as kube-apiserver names it (``apiserver/pkg/authentication/serviceaccount/util.go``)."""
    return User(f"{SA_PREFIX}{namespace}:{name}", uid,
                ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"),
                tuple((k, (v,)) for k, v in sorted((extra or {}).items())))


def parse_token_file(text: str) -> dict[str, User]:
    """token → User, from kube-apiserver's static token file format (blank lines and ``#`` comments skipped).

    >>> parse_token_file('s3cret,alice,u-1,"workshop,participants"\\n')["s3cret"].groups
    ('workshop', 'participants', 'system:authenticated')
    """
    out: dict[str, User] = {}
    for row in csv.reader(io.StringIO(text)):
        if not row or not row[0].strip() or row[0].lstrip().startswith("#") or len(row) < 3:
            continue
        token, name, uid = (x.strip() for x in row[:3])
        groups = tuple(g.strip() for g in row[3].split(",") if g.strip()) if len(row) > 3 else ()
        out[token] = User(name, uid, groups + ("system:authenticated",))
    return out


class Authenticator:
    def __init__(self, admin_token: str, token_file: Path | None = None, *, tokens: Any = None, store: Any = None) -> None:
        self.admin_token = admin_token
        self.token_file = token_file
        self.tokens = tokens  # satokens.TokenIssuer: ServiceAccount tokens, checked against the store's objects
        self.store = store
        self._lock = threading.Lock()
        self._stamp: tuple[float, int] | None = None
        self._users: dict[str, User] = {}

    def _file_users(self) -> dict[str, User]:
        if self.token_file is None:
            return {}
        try:
            st = self.token_file.stat()
        except OSError:
            return {}
        with self._lock:
            if self._stamp != (st.st_mtime, st.st_size):
                try:
                    self._users = parse_token_file(self.token_file.read_text())
                except (OSError, UnicodeDecodeError):
                    self._users = {}
                self._stamp = (st.st_mtime, st.st_size)
            return self._users

    def user(self, token: str, audiences: list[str] | None = None) -> User | None:
        """The user a bearer token stands for, or None when the token is unknown, expired or no longer valid."""
        return self.review(token, audiences)[0]

    def review(self, token: str, audiences: list[str] | None = None) -> tuple[User | None, str, list[str]]:
        """(user or None, kube-apiserver's error text or "", the audiences it was accepted for), as TokenReview reports
        a token: a token no authenticator knows is "invalid bearer token"; one the service-account authenticator
        rejects adds its reason (``[invalid bearer token, service account token has expired]``)."""
        wanted = list(audiences) if audiences else ([self.tokens.issuer] if self.tokens is not None else [])
        if hmac.compare_digest(token.encode(), self.admin_token.encode()):
            return ADMIN, "", wanted
        for known, user in self._file_users().items():
            if hmac.compare_digest(token.encode(), known.encode()):
                return user, "", wanted
        if token.count(".") == 2 and self.tokens is not None and self.store is not None:
            try:
                user, auds = self.service_account(token, audiences)
                return user, "", auds
            except TokenInvalid as exc:
                if str(exc):
                    return None, f"[invalid bearer token, {exc}]", []
            try:
                return self.legacy_service_account(token), "", wanted
            except TokenInvalid as exc:
                if str(exc):
                    return None, f"[invalid bearer token, {exc}]", []
        return None, "invalid bearer token", []

    def service_account(self, token: str, audiences: list[str] | None = None) -> tuple[User, list[str]]:
        """A ServiceAccount token's user (and the audiences it holds of those wanted), if its signature, times and
        audiences hold and the ServiceAccount (and the pod it is bound to) still exist with the uid in it; else
        `satokens.TokenInvalid` (``pkg/serviceaccount/claims.go``)."""
        claims = self.tokens.check(token, audiences)
        private = claims["kubernetes.io"]
        namespace = str(private.get("namespace", ""))
        sa = private.get("serviceaccount") if isinstance(private.get("serviceaccount"), dict) else {}
        sa_name, sa_uid = str(sa.get("name", "")), str(sa.get("uid", ""))
        deleted_before = self.tokens.clock() - LEEWAY
        obj = self.store.try_get("v1/serviceaccounts", namespace, sa_name)
        if obj is None:
            raise TokenInvalid(f'serviceaccounts "{sa_name}" not found')
        if obj["metadata"].get("uid") != sa_uid:
            raise TokenInvalid(f"service account UID ({obj['metadata'].get('uid')}) does not match claim ({sa_uid})")
        if _deleted_before(obj, deleted_before):
            raise TokenInvalid(f"service account {namespace}/{sa_name} has been deleted")
        extra: dict[str, str] = {}
        pod = private.get("pod")
        if isinstance(pod, dict):
            live = self.store.try_get("v1/pods", namespace, str(pod.get("name", "")))
            if live is None or _deleted_before(live, deleted_before):
                raise TokenInvalid("service account token has been invalidated")
            if live["metadata"].get("uid") != pod.get("uid"):
                raise TokenInvalid(f"pod UID ({live['metadata'].get('uid')}) does not match service account pod ref "
                                   f"claim ({pod.get('uid')})")
            extra["authentication.kubernetes.io/pod-name"] = str(pod.get("name", ""))
            extra["authentication.kubernetes.io/pod-uid"] = str(pod.get("uid", ""))
            node = private.get("node")
            if isinstance(node, dict):
                extra["authentication.kubernetes.io/node-name"] = str(node.get("name", ""))
                if node.get("uid"):
                    extra["authentication.kubernetes.io/node-uid"] = str(node.get("uid", ""))
        if claims.get("jti"):
            extra["authentication.kubernetes.io/credential-id"] = f"JTI={claims['jti']}"
        aud = claims.get("aud")
        token_auds = [aud] if isinstance(aud, str) else list(aud or [])
        wanted = list(audiences) if audiences else [self.tokens.issuer]
        return service_account_user(namespace, sa_name, sa_uid, extra), [a for a in token_auds if a in wanted]


    def legacy_service_account(self, token: str) -> User:
        """A Secret-based ServiceAccount token's user: valid while its Secret still holds exactly this token and the
        ServiceAccount exists with the uid in it (``pkg/serviceaccount/legacy.go``)."""
        claims = self.tokens.check_legacy(token)
        namespace = claims["kubernetes.io/serviceaccount/namespace"]
        sa_name = claims["kubernetes.io/serviceaccount/service-account.name"]
        sa_uid = claims["kubernetes.io/serviceaccount/service-account.uid"]
        secret = self.store.try_get("v1/secrets", namespace, claims["kubernetes.io/serviceaccount/secret.name"])
        if secret is None or secret["metadata"].get("deletionTimestamp"):
            raise TokenInvalid("token has been invalidated")
        try:
            held = base64.b64decode((secret.get("data") or {}).get("token") or "").decode()
        except (ValueError, UnicodeDecodeError):
            held = ""
        if not hmac.compare_digest(held.encode(), token.encode()):
            raise TokenInvalid("token does not match server's copy")
        sa = self.store.try_get("v1/serviceaccounts", namespace, sa_name)
        if sa is None:
            raise TokenInvalid(f'serviceaccounts "{sa_name}" not found')
        if sa["metadata"].get("uid") != sa_uid:
            raise TokenInvalid(f"service account UID ({sa['metadata'].get('uid')}) does not match claim ({sa_uid})")
        return service_account_user(namespace, sa_name, sa_uid)


def _deleted_before(obj: dict[str, Any], when: float) -> bool:
    stamp = obj["metadata"].get("deletionTimestamp")
    if not stamp:
        return False
    try:
        return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp() < when
    except ValueError:
        return True
