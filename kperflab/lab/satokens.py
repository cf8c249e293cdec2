"""ServiceAccount tokens: JWTs signed by a lab-owned key, shaped as kube-apiserver issues them.

kube-apiserver signs bound ServiceAccount tokens (TokenRequest, projected volumes) with its
``--service-account-signing-key-file`` (RS256 for an RSA key) and the header's ``kid`` is the unpadded base64url
SHA-256 of the public key's DER (``pkg/serviceaccount/jwt.go``). The claims (``pkg/serviceaccount/claims.go``)::

    iss, sub "system:serviceaccount:<ns>:<sa>", aud [..], exp, iat, nbf, jti,
    kubernetes.io: {namespace, serviceaccount{name, uid}, pod{name, uid}?, node{name, uid}?, warnafter?}

Verification checks the signature, the issuer, the audiences (any one in common) and the times with go-jose's
default leeway of one minute; whether the ServiceAccount (and bound pod) still exist is the authenticator's part.
The signing key is the lab's own: generated once under its state dir, mode 0600.

Long-lived tokens the upstream way are Secrets of type ``kubernetes.io/service-account-token``: `LegacyTokenController`
(kube-controller-manager's tokens controller) fills them with a token of issuer ``kubernetes/serviceaccount`` that
never expires and is valid while the Secret holds it. `request_token` is TokenRequest's work, shared by the
``serviceaccounts/<name>/token`` endpoint and the kubelet's projected tokens (`token_source`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .store import run_on_change

DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
LEEWAY = 60  # go-jose's jwt.DefaultLeeway, used by kube-apiserver's validator
# a projected token asking for exactly this many seconds gets a year instead, with kubernetes.io.warnafter set
# (kube-apiserver's default --service-account-extend-token-expiration; pkg/serviceaccount: WarnOnlyBoundTokenExpirationSeconds)
WARN_ONLY_EXPIRATION = 3607
EXTENDED_EXPIRATION = 365 * 24 * 3600
LEGACY_ISSUER = "kubernetes/serviceaccount"
MIN_EXPIRATION = 600  # TokenRequest validation: "may not specify a duration less than 10 minutes"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_or_create_key(path: Path) -> rsa.RSAPrivateKey:
    """The lab's signing key at ``path`` (PEM, PKCS#8), made on first use with mode 0600."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if isinstance(key, rsa.RSAPrivateKey):
            return key
    except (OSError, ValueError, TypeError):
        pass
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return key


class TokenIssuer:
    """Issues and verifies bound ServiceAccount tokens (RS256 JWS, compact serialisation)."""

    def __init__(self, key_pem_path: Path, issuer: str = DEFAULT_ISSUER, *, clock: Callable[[], float] = time.time) -> None:
        self.key = load_or_create_key(Path(key_pem_path))
        self.public = self.key.public_key()
        der = self.public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = _b64(hashlib.sha256(der).digest())
        self.issuer = issuer
        self.clock = clock

    def public_pem(self) -> bytes:
        return self.public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def issue(self, namespace: str, sa_name: str, sa_uid: str, audiences: list[str], expiration_seconds: int,
              pod: dict | None = None, node: dict | None = None, *, warn_after: int | None = None) -> tuple[str, int]:
        """A signed token for the ServiceAccount, bound to ``pod`` (and ``node``) when given: (JWT, exp epoch seconds).

        ``warn_after`` (epoch seconds) sets ``kubernetes.io.warnafter``, as for an extended projected token.
        """
        now = int(self.clock())
        exp = now + int(expiration_seconds)
        private: dict[str, Any] = {"namespace": namespace, "serviceaccount": {"name": sa_name, "uid": sa_uid}}
        if pod is not None:
            meta = pod.get("metadata", pod)
            private["pod"] = {"name": meta.get("name", ""), "uid": meta.get("uid", "")}
        if node is not None:
            meta = node.get("metadata", node)
            private["node"] = {"name": meta.get("name", ""), "uid": meta.get("uid", "")}
        if warn_after is not None:
            private["warnafter"] = int(warn_after)
        claims = {"aud": list(audiences), "exp": exp, "iat": now, "iss": self.issuer, "jti": str(uuid.uuid4()),
                  "kubernetes.io": private, "nbf": now, "sub": f"system:serviceaccount:{namespace}:{sa_name}"}
        return self._sign(claims), exp

    def verify(self, token: str, audiences: list[str] | None = None) -> dict | None:
        """The token's claims if this issuer signed it, it is within its times and shares an audience; else None."""
        try:
            return self.check(token, audiences)
        except TokenInvalid:
            return None

    def _signed_claims(self, token: str, issuer: str) -> dict:
        """The claims of a JWS this lab's key signed for ``issuer``; `TokenInvalid` ("" when it is not one of
        ``issuer``'s tokens at all, go-jose's words for a bad signature)."""
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenInvalid("")
        try:
            header = json.loads(_unb64(parts[0]))
            claims = json.loads(_unb64(parts[1]))
            signature = _unb64(parts[2])
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise TokenInvalid("") from None
        if not isinstance(header, dict) or not isinstance(claims, dict) or claims.get("iss") != issuer:
            raise TokenInvalid("")
        try:
            if header.get("alg") != "RS256":
                raise InvalidSignature
            self.public.verify(signature, f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise TokenInvalid("go-jose/go-jose: error in cryptographic primitive") from None
        return claims

    def check(self, token: str, audiences: list[str] | None = None) -> dict:
        """The token's claims, or `TokenInvalid` with kube-apiserver's reason (empty for a token not of this issuer,
        which the service-account authenticator leaves to others without an error; ``pkg/serviceaccount/jwt.go``)."""
        claims = self._signed_claims(token, self.issuer)
        private = claims.get("kubernetes.io")
        sub = claims.get("sub")
        if not isinstance(private, dict) or not isinstance(sub, str) or not sub.startswith("system:serviceaccount:"):
            raise TokenInvalid("service account token claims could not be validated due to unexpected private claim")
        aud = claims.get("aud")
        token_auds = [aud] if isinstance(aud, str) else [a for a in aud if isinstance(a, str)] if isinstance(aud, list) else []
        wanted = list(audiences) if audiences else [self.issuer]
        if not token_auds:
            token_auds = [self.issuer]
        if not set(token_auds) & set(wanted):
            raise TokenInvalid(f"token audiences {_go_quote(token_auds)} is invalid for the target audiences {_go_quote(wanted)}")
        now = self.clock()
        try:
            if "exp" in claims and now > float(claims["exp"]) + LEEWAY:
                raise TokenInvalid("service account token has expired")
            if "nbf" in claims and now + LEEWAY < float(claims["nbf"]):
                raise TokenInvalid("service account token is not valid yet")
            if "iat" in claims and now + LEEWAY < float(claims["iat"]):
                raise TokenInvalid("service account token is issued in the future")
        except (TypeError, ValueError):
            raise TokenInvalid("service account token claims could not be validated due to unexpected validation error") from None
        return claims


    def issue_legacy(self, namespace: str, sa_name: str, sa_uid: str, secret_name: str) -> str:
        """A long-lived token for a ``kubernetes.io/service-account-token`` Secret, as kube-controller-manager's
        tokens controller writes it (``pkg/serviceaccount/legacy.go``: issuer ``kubernetes/serviceaccount``, no
        expiry; valid while the Secret holds it and the ServiceAccount exists)."""
        claims = {"iss": LEGACY_ISSUER, "kubernetes.io/serviceaccount/namespace": namespace,
                  "kubernetes.io/serviceaccount/secret.name": secret_name,
                  "kubernetes.io/serviceaccount/service-account.name": sa_name,
                  "kubernetes.io/serviceaccount/service-account.uid": sa_uid,
                  "sub": f"system:serviceaccount:{namespace}:{sa_name}"}
        return self._sign(claims)

    def _sign(self, claims: dict[str, Any]) -> str:
        header = {"alg": "RS256", "kid": self.kid}
        signing_input = f"{_b64(json.dumps(header, separators=(',', ':')).encode())}." \
                        f"{_b64(json.dumps(claims, separators=(',', ':')).encode())}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64(signature)}"

    def check_legacy(self, token: str) -> dict:
        """A Secret-based token's claims (signature and shape checked); `TokenInvalid` otherwise ("" if not one)."""
        claims = self._signed_claims(token, LEGACY_ISSUER)
        for key, name in (("namespace", "namespace"), ("secret.name", "secretName"),
                          ("service-account.name", "serviceAccountName"), ("service-account.uid", "serviceAccountUID")):
            value = claims.get(f"kubernetes.io/serviceaccount/{key}")
            if not isinstance(value, str) or not value:
                raise TokenInvalid(f"{name} claim is missing")
        return claims


class TokenInvalid(Exception):
    """Why a token is not accepted, in kube-apiserver's words (TokenReview's status.error); empty: not ours."""


def _go_quote(items: list[str]) -> str:
    """Go's %q of a []string: ``["a" "b"]``."""
    return "[" + " ".join(json.dumps(i) for i in items) + "]"


def claims_identity(claims: dict) -> tuple[str, str, str, dict | None, dict | None]:
    """(namespace, sa name, sa uid, pod ref, node ref) from verified claims."""
    private = claims.get("kubernetes.io") or {}
    sa = private.get("serviceaccount") or {}
    return (str(private.get("namespace", "")), str(sa.get("name", "")), str(sa.get("uid", "")),
            private.get("pod"), private.get("node"))


def request_token(store: Any, issuer: TokenIssuer, namespace: str, sa_name: str, audiences: list[str] | None,
                  expiration_seconds: int, pod: dict | None = None, api_audiences: list[str] | None = None,
                  ) -> tuple[str, int, dict]:
    """A TokenRequest's work once validated (``pkg/registry/core/serviceaccount/storage/token.go``):
    (token, status.expirationTimestamp as epoch seconds, the ServiceAccount).

    A pod-bound request for exactly 3607 s with the API server's audiences gets a one-year token that warns after
    3607 s, while the status still says 3607 s. Raises the store's NotFound for a missing ServiceAccount.
    """
    from . import errors

    sa = store.get("v1/serviceaccounts", namespace, sa_name, "serviceaccounts")
    api_aud = list(api_audiences or [issuer.issuer])
    auds = list(audiences or api_aud)
    node = None
    if pod is not None:
        if (pod.get("spec", {}).get("serviceAccountName") or "default") != sa_name:
            raise errors.bad_request(f'cannot bind token for serviceaccount "{sa_name}" to pod running with different '
                                     "serviceaccount name.")
        node_name = pod.get("spec", {}).get("nodeName")
        if node_name:  # ServiceAccountTokenPodNodeInfo: the node's name, and its uid where the Node exists
            node = store.try_get("v1/nodes", "", node_name) or {"metadata": {"name": node_name}}
    now = int(issuer.clock())
    exp, warn_after = int(expiration_seconds), None
    if pod is not None and exp == WARN_ONLY_EXPIRATION and set(auds) <= set(api_aud):
        exp, warn_after = EXTENDED_EXPIRATION, now + WARN_ONLY_EXPIRATION
    token, _ = issuer.issue(namespace, sa_name, sa["metadata"]["uid"], auds, exp, pod, node, warn_after=warn_after)
    return token, now + int(expiration_seconds), sa


def token_source(store: Any, issuer: TokenIssuer, api_audiences: list[str] | None = None
                 ) -> Callable[[str, str, list[str] | None, int, dict | None], tuple[str, int]]:
    """The kubelet's way to a projected token: ``sa_token(namespace, sa_name, audiences, expiration_seconds, pod)``
    → (token, expirationTimestamp epoch seconds), as the kubelet's TokenRequest through the API would give."""
    def sa_token(namespace: str, sa_name: str, audiences: list[str] | None, expiration_seconds: int,
                 pod: dict | None = None) -> tuple[str, int]:
        token, exp, _ = request_token(store, issuer, namespace, sa_name, audiences, expiration_seconds, pod, api_audiences)
        return token, exp
    return sa_token


SA_TOKEN_TYPE = "kubernetes.io/service-account-token"
SA_NAME_ANNOTATION = "kubernetes.io/service-account.name"
SA_UID_ANNOTATION = "kubernetes.io/service-account.uid"


class LegacyTokenController:
    """kube-controller-manager's tokens controller for Secrets of type ``kubernetes.io/service-account-token``
    (``pkg/controller/serviceaccount/tokens_controller.go``): one naming an existing ServiceAccount gets ``token``,
    ``ca.crt`` and ``namespace`` in its data and the ServiceAccount's uid as an annotation; one whose ServiceAccount is
    gone (or has another uid) is deleted."""

    def __init__(self, store: Any, issuer: TokenIssuer, ca_pem: bytes) -> None:
        self.store = store
        self.issuer = issuer
        self.ca_pem = ca_pem

    def reconcile(self) -> None:
        secrets, *_ = self.store.list("v1/secrets", None, lambda o: o.get("type") == SA_TOKEN_TYPE)
        for secret in secrets:
            meta = secret["metadata"]
            if meta.get("deletionTimestamp"):
                continue
            ann = meta.get("annotations") or {}
            sa = self.store.try_get("v1/serviceaccounts", meta["namespace"], ann.get(SA_NAME_ANNOTATION, ""))
            uid = ann.get(SA_UID_ANNOTATION)
            if sa is None or (uid and uid != sa["metadata"]["uid"]):
                try:
                    self.store.remove("v1/secrets", meta["namespace"], meta["name"], uid=meta.get("uid"))
                except Exception:  # noqa: BLE001 - gone or changed meanwhile: the next pass decides again
                    pass
                continue
            data = secret.get("data") or {}
            if data.get("token") and uid:
                continue
            token = self.issuer.issue_legacy(meta["namespace"], sa["metadata"]["name"], sa["metadata"]["uid"], meta["name"])
            secret["data"] = {**data, "token": base64.b64encode(token.encode()).decode(),
                              "ca.crt": base64.b64encode(self.ca_pem).decode(),
                              "namespace": base64.b64encode(meta["namespace"].encode()).decode()}
            meta.setdefault("annotations", {})[SA_UID_ANNOTATION] = sa["metadata"]["uid"]
            try:
                self.store.update("v1/secrets", secret, kind="secrets")
            except Exception:  # noqa: BLE001 - changed meanwhile: the next pass fills it
                pass

    def run(self, stop: Any) -> None:
        run_on_change(self.store, stop, self.reconcile, "tokens controller")
