"""In-cluster identity for pods, as kube-apiserver and kube-controller-manager give it.

- ``ServiceAccountAdmission``: the ``ServiceAccount`` admission plugin (``plugin/pkg/admission/serviceaccount``) on
  pod create: ``spec.serviceAccountName`` defaults to ``default``; the ServiceAccount must exist (403 ``error looking
  up service account <ns>/<sa>: serviceaccount "<sa>" not found``; the ``default`` one is looked up ten times,
  100–200 ms apart, since its controller may not have made it yet); unless ``automountServiceAccountToken`` says no
  (the pod's word wins over the ServiceAccount's), a projected volume ``kube-api-access-<5 random>`` —
  serviceAccountToken (3607 s, ``token``), ConfigMap ``kube-root-ca.crt`` (``ca.crt``), downwardAPI ``namespace``,
  defaultMode 0644 — mounted read-only at ``/var/run/secrets/kubernetes.io/serviceaccount`` in every container and
  init container that has nothing mounted there yet; the ServiceAccount's ``imagePullSecrets`` when the pod has none;
  with the ServiceAccount's ``kubernetes.io/enforce-mountable-secrets: "true"``, only the secrets it lists.
- ``NamespaceControllers``: kube-controller-manager's ``serviceaccount-controller`` (a ``default`` ServiceAccount in
  every active namespace, made again when deleted) and ``root-ca-cert-publisher`` (ConfigMap ``kube-root-ca.crt``
  with the cluster CA as ``ca.crt`` in every namespace, made again when deleted and put back when changed).
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from .errors import APIError
from .store import Store, run_on_change

log = logging.getLogger("kperflab.lab.admission")
Obj = dict[str, Any]

DEFAULT_SERVICE_ACCOUNT = "default"
TOKEN_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"  # DefaultAPITokenMountPath
VOLUME_PREFIX = "kube-api-access-"
TOKEN_EXPIRATION = 3607  # WarnOnlyBoundTokenExpirationSeconds: the API server extends it, warning after 3607 s
PROJECTED_DEFAULT_MODE = 0o644  # corev1.ProjectedVolumeSourceDefaultMode, set explicitly by the plugin
ENFORCE_MOUNTABLE_SECRETS = "kubernetes.io/enforce-mountable-secrets"
MIRROR_POD = "kubernetes.io/config.mirror"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
ROOT_CA_DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints "
                       "such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across "
                       "distributions of Kubernetes clusters.")
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # names.SimpleNameGenerator's


def token_volume(name: str) -> Obj:
    """The projected volume the plugin adds (``TokenVolumeSource``)."""
    return {"name": name, "projected": {"defaultMode": PROJECTED_DEFAULT_MODE, "sources": [
        {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION, "path": "token"}},
        {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ]}}


def should_automount(sa: Obj, pod: Obj) -> bool:
    """The pod's ``automountServiceAccountToken`` wins, then the ServiceAccount's; true when neither says."""
    pod_says = (pod.get("spec") or {}).get("automountServiceAccountToken")
    if isinstance(pod_says, bool):
        return pod_says
    sa_says = sa.get("automountServiceAccountToken")
    return sa_says if isinstance(sa_says, bool) else True


def mount_token(pod: Obj, name_suffix: Callable[[], str] | None = None) -> None:
    """``mountServiceAccountToken``: reuse a ``kube-api-access-*`` volume the pod has, else name a new one; mount it in
    every (init) container without a mount at the token path; add the volume if one of them needed it."""
    spec = pod.setdefault("spec", {})
    volumes = spec.get("volumes") or []
    if not isinstance(volumes, list):
        return  # malformed: validation answers with its 422
    existing = next((v.get("name") for v in volumes if isinstance(v, dict)
                     and str(v.get("name", "")).startswith(VOLUME_PREFIX)), None)
    name = existing or VOLUME_PREFIX + (name_suffix or _suffix)()
    mount = {"name": name, "readOnly": True, "mountPath": TOKEN_MOUNT_PATH}
    needed = False
    for key in ("initContainers", "containers"):
        for c in spec.get(key) if isinstance(spec.get(key), list) else []:
            if not isinstance(c, dict):
                continue
            mounts = c.get("volumeMounts") or []
            if not isinstance(mounts, list):
                continue
            if any(isinstance(m, dict) and m.get("mountPath") == TOKEN_MOUNT_PATH for m in mounts):
                continue
            c["volumeMounts"] = [*mounts, dict(mount)]
            needed = True
    if needed and existing is None:
        spec["volumes"] = [*volumes, token_volume(name)]


def _suffix() -> str:
    return "".join(secrets.choice(NAME_ALPHABET) for _ in range(5))


def mountable_secrets_violation(sa: Obj, pod: Obj) -> str | None:
    """``limitSecretReferences``: the first secret reference the ServiceAccount does not list, in upstream's words."""
    allowed = {s.get("name") for s in sa.get("secrets") or [] if isinstance(s, dict)}
    sa_name = sa["metadata"]["name"]
    spec = pod.get("spec") or {}
    for v in spec.get("volumes") or []:
        secret = v.get("secret") if isinstance(v, dict) else None
        if isinstance(secret, dict) and secret.get("secretName") not in allowed:
            return (f'volume with secret.secretName="{secret.get("secretName")}" is not allowed because service account '
                    f"{sa_name} does not reference that secret")
    for key, what in (("initContainers", "init container"), ("containers", "container")):
        for c in spec.get(key) or []:
            for e in c.get("env") or []:
                ref = ((e.get("valueFrom") or {}).get("secretKeyRef") or {}) if isinstance(e, dict) else {}
                if ref and ref.get("name") not in allowed:
                    return (f'{what} {c.get("name")} with envVar {e.get("name")} referencing secret.secretName='
                            f'"{ref.get("name")}" is not allowed because service account {sa_name} does not reference '
                            "that secret")
            for ef in c.get("envFrom") or []:
                ref = (ef.get("secretRef") or {}) if isinstance(ef, dict) else {}
                if ref and ref.get("name") not in allowed:
                    return (f'{what} {c.get("name")} with envFrom referencing secret.secretName="{ref.get("name")}" is '
                            f"not allowed because service account {sa_name} does not reference that secret")
    pulls = {s.get("name") for s in sa.get("imagePullSecrets") or [] if isinstance(s, dict)}
    for i, ref in enumerate(spec.get("imagePullSecrets") or []):
        if isinstance(ref, dict) and ref.get("name") not in pulls:
            return (f'imagePullSecrets[{i}].name="{ref.get("name")}" is not allowed because service account {sa_name} '
                    "does not reference that imagePullSecret")
    return None


class ServiceAccountAdmission:
    """The ``ServiceAccount`` admission plugin for pod creation (mutating, then its validation)."""

    def __init__(self, store: Store, sleep: Callable[[float], None] = time.sleep) -> None:
        self.store = store
        self.sleep = sleep

    def admit(self, pod: Obj, namespace: str | None = None) -> None:
        """Mutate ``pod`` (decoded and defaulted, not yet validated) or raise the 403 kube-apiserver gives."""
        meta = pod.setdefault("metadata", {})
        spec = pod.setdefault("spec", {})
        if not isinstance(spec, dict):
            return  # validation answers for a malformed spec
        ns = namespace or meta.get("namespace") or "default"
        if MIRROR_POD in (meta.get("annotations") or {}):
            return  # the lab's kubelet makes no mirror pods; upstream leaves their spec alone
        if not spec.get("serviceAccountName"):
            spec["serviceAccountName"] = spec.get("serviceAccount") or DEFAULT_SERVICE_ACCOUNT
        sa_name = str(spec["serviceAccountName"])
        spec["serviceAccount"] = sa_name  # the deprecated field mirrors it in v1
        sa = self._service_account(ns, sa_name)
        if sa is None:
            raise self._forbidden(pod, f"error looking up service account {ns}/{sa_name}: "
                                       f'serviceaccount "{sa_name}" not found')
        if should_automount(sa, pod):
            mount_token(pod)
        if not spec.get("imagePullSecrets") and sa.get("imagePullSecrets"):
            spec["imagePullSecrets"] = [{"name": s.get("name")} for s in sa["imagePullSecrets"] if isinstance(s, dict)]
        if str((sa["metadata"].get("annotations") or {}).get(ENFORCE_MOUNTABLE_SECRETS, "")).lower() in ("true", "1", "t"):
            why = mountable_secrets_violation(sa, pod)
            if why:
                raise self._forbidden(pod, why)

    def _service_account(self, namespace: str, name: str) -> Obj | None:
        attempts = 10 if name == DEFAULT_SERVICE_ACCOUNT else 1  # its controller may be about to make it
        interval = (100 + random.randrange(100)) / 1000
        for i in range(attempts):
            if i:
                self.sleep(interval)
            sa = self.store.try_get("v1/serviceaccounts", namespace, name)
            if sa is not None:
                return sa
        return None

    @staticmethod
    def _forbidden(pod: Obj, why: str) -> APIError:
        """``admission.NewForbidden``: the object's name, or its generateName before a name is generated."""
        meta = pod.get("metadata") or {}
        name, gen = str(meta.get("name") or ""), str(meta.get("generateName") or "")
        if gen and (not name or (name.startswith(gen) and len(name) == len(gen) + 5)):
            name = gen
        return APIError(403, "Forbidden", f'pods "{name or "Unknown"}" is forbidden: {why}',
                        details={"name": name or "Unknown", "kind": "pods"})


def _everything(obj: Obj) -> bool:
    return True


def _ours(obj: Obj) -> bool:
    return (obj.get("metadata") or {}).get("name") in (DEFAULT_SERVICE_ACCOUNT, ROOT_CA_CONFIGMAP)


# -- kube-controller-manager's per-namespace controllers -------------------------------------------------

class NamespaceControllers:
    """``serviceaccount-controller`` and ``root-ca-cert-publisher``: what every namespace gets. ``run(stop)`` on a
    thread of its own; each pass handles the namespaces whose Namespace, ``default`` ServiceAccount or
    ``kube-root-ca.crt`` changed since the last one (all of them on the first pass and every ``resync`` seconds)."""

    SOURCES = ("v1/namespaces", "v1/serviceaccounts", "v1/configmaps")

    def __init__(self, store: Store, root_ca: bytes, resync: float = 300.0) -> None:
        self.store = store
        self.root_ca = root_ca.decode() if isinstance(root_ca, bytes) else str(root_ca)
        self.resync = resync
        self._cursor: int | None = None
        self._last_full = 0.0

    def run(self, stop: threading.Event) -> None:
        run_on_change(self.store, stop, self.reconcile, "serviceaccount / root CA publisher")

    def reconcile(self) -> None:
        now = time.monotonic()
        dirty: set[str] | None = None
        current = self.store.resource_version
        if self._cursor is not None and now - self._last_full < self.resync:
            dirty = set()
            try:
                for resource in self.SOURCES:
                    relevant = _everything if resource == "v1/namespaces" else _ours
                    for _, obj in self.store.watch(resource, None, str(self._cursor), relevant, timeout=0):
                        meta = obj["metadata"]
                        dirty.add(meta["name"] if resource == "v1/namespaces" else meta.get("namespace", ""))
            except APIError:
                dirty = None  # the event log moved on: everything again
        self._cursor = current
        if dirty is None:
            self._last_full = now
            namespaces, *_ = self.store.list("v1/namespaces")
        else:
            namespaces = [n for n in (self.store.try_get("v1/namespaces", "", name) for name in sorted(dirty)) if n]
        for ns in namespaces:
            if ns["metadata"].get("deletionTimestamp") or (ns.get("status") or {}).get("phase", "Active") != "Active":
                continue
            name = ns["metadata"]["name"]
            self._ensure_service_account(name)
            self._publish_root_ca(name)

    def _ensure_service_account(self, namespace: str) -> None:
        if self.store.try_get("v1/serviceaccounts", namespace, DEFAULT_SERVICE_ACCOUNT) is not None:
            return
        try:
            self.store.create("v1/serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {
                "name": DEFAULT_SERVICE_ACCOUNT, "namespace": namespace}}, "serviceaccounts")
        except APIError as exc:
            if exc.code != 409:
                raise

    def _publish_root_ca(self, namespace: str) -> None:
        data = {"ca.crt": self.root_ca}
        cm = self.store.try_get("v1/configmaps", namespace, ROOT_CA_CONFIGMAP)
        if cm is None:
            try:
                self.store.create("v1/configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
                    "name": ROOT_CA_CONFIGMAP, "namespace": namespace,
                    "annotations": {"kubernetes.io/description": ROOT_CA_DESCRIPTION}}, "data": data}, "configmaps")
            except APIError as exc:
                if exc.code != 409:
                    raise
            return
        annotations = cm["metadata"].get("annotations") or {}
        if cm.get("data") == data and annotations.get("kubernetes.io/description"):
            return
        cm["data"] = data
        cm["metadata"]["annotations"] = {**annotations, "kubernetes.io/description": ROOT_CA_DESCRIPTION}
        try:
            self.store.update("v1/configmaps", cm)
        except APIError as exc:
            if exc.code not in (404, 409):  # changed or gone meanwhile: the next pass sees it
                raise
