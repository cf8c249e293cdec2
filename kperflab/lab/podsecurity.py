"""Pod Security Admission, as kube-apiserver's built-in ``PodSecurity`` plugin does it (k8s.io/pod-security-admission).

The lab's configuration is what an ``AdmissionConfiguration`` would give kube-apiserver::

    apiVersion: pod-security.admission.config.k8s.io/v1
    kind: PodSecurityConfiguration
    defaults: {enforce: baseline, enforce-version: latest, audit: baseline, audit-version: latest,
               warn: baseline, warn-version: latest}
    exemptions: {usernames: [], runtimeClasses: [], namespaces: [kube-system]}

So a pod that is privileged, shares the host's PID/IPC/network namespaces, mounts a hostPath, uses a hostPort, adds a
capability beyond the default set (…every ``baseline`` check) is refused in a namespace without labels; a namespace
labelled ``pod-security.kubernetes.io/enforce=privileged`` takes it. ``warn`` is ``baseline`` too (not upstream's
``privileged`` default) so that a Deployment whose template breaks the policy is answered with a warning when it is
made, not only with its ReplicaSet's ``FailedCreate`` events; by upstream's rule (``api.PolicyToEvaluate``) an
``enforce`` label only raises ``warn`` when it is stricter than it, so ``enforce=privileged`` alone still warns —
label ``pod-security.kubernetes.io/warn=privileged`` as well to silence it. ``audit`` would only annotate audit
events, and the lab keeps no audit log: it is not evaluated.

What the plugin does (``admission/admission.go``):

- Pods (create, and updates that change an image or the containers): ``enforce`` refuses with 403
  ``pods "<name>" is forbidden: violates PodSecurity "<level>:<version>": <reason> (<detail>), …``; when allowed,
  ``warn`` adds ``would violate PodSecurity "<level>:<version>": …`` warnings. Subresources are not checked.
- Kinds with a pod template (Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob, ReplicationController,
  PodTemplate): only ``warn`` — never refused. Their pods, made by the controllers, go through the same check as a pod
  POST (``policy.admit``), so a refusal shows as the controller's ``FailedCreate`` event.
- Namespaces: invalid label values are refused with kube-apiserver's 422 (``must be one of privileged, baseline,
  restricted``; ``must be "latest" or "v1.x"``) on create and on an update that makes them invalid; an update to a
  stricter ``enforce`` warns ``existing pods in namespace "x" violate the new PodSecurity enforce level "…"`` and a line
  per distinct violation (the first pod by name, ``(and N other pods)``), at most 3000 pods within 1 s; an exempt
  namespace labelled with a policy is told it will be ignored.
- Levels ``privileged|baseline|restricted``, versions ``latest`` or ``v1.N`` (a version newer than the checks' newest,
  v1.37 here, is evaluated as that). Every check of ``policy/check_*.go``, versioned as upstream versions it, over init,
  regular and ephemeral containers, with upstream's reasons and details, ordered by check ID (baseline, then
  restricted); restricted checks override the baseline checks they tighten.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from . import validation as val
from .errors import APIError

Obj = dict[str, Any]
Version = tuple[int, int] | None  # None = "latest"

PRIVILEGED, BASELINE, RESTRICTED = "privileged", "baseline", "restricted"
LEVELS = (PRIVILEGED, BASELINE, RESTRICTED)
PREFIX = "pod-security.kubernetes.io/"
MODES = ("enforce", "audit", "warn")
MAX_VERSION = (1, 37)  # the newest check version (sysctls v1.37), also the lab's Kubernetes version (emulation)
EXEMPT_NAMESPACES = ("kube-system",)
MAX_PODS_TO_CHECK = 3000  # defaultNamespaceMaxPodsToCheck
POD_CHECK_TIMEOUT = 1.0  # defaultNamespacePodCheckTimeout
WORKLOADS = {("", "ReplicationController"), ("", "PodTemplate"), ("apps", "ReplicaSet"), ("apps", "Deployment"),
             ("apps", "StatefulSet"), ("apps", "DaemonSet"), ("batch", "Job"), ("batch", "CronJob")}


@dataclass(frozen=True)
class LevelVersion:
    level: str
    version: Version = None

    def __str__(self) -> str:
        return f"{self.level}:{'latest' if self.version is None else f'v{self.version[0]}.{self.version[1]}'}"

    def equivalent(self, other: LevelVersion) -> bool:
        return (self.level == PRIVILEGED and other.level == PRIVILEGED) or self == other


@dataclass(frozen=True)
class Policy:
    enforce: LevelVersion
    audit: LevelVersion
    warn: LevelVersion

    def fully_privileged(self) -> bool:
        return self.enforce.level == self.audit.level == self.warn.level == PRIVILEGED

    def equivalent(self, other: Policy) -> bool:
        return all(getattr(self, m).equivalent(getattr(other, m)) for m in MODES)


DEFAULTS = Policy(LevelVersion(BASELINE), LevelVersion(BASELINE), LevelVersion(BASELINE))


def compare_levels(a: str, b: str) -> int:
    """``api.CompareLevels``: +1 when ``a`` is stricter than ``b``."""
    order = {PRIVILEGED: 0, BASELINE: 1, RESTRICTED: 2}
    return (order.get(a, 1) > order.get(b, 1)) - (order.get(a, 1) < order.get(b, 1))


_VERSION = re.compile(r"^v1\.([0-9]|[1-9][0-9]*)$")


def parse_level(text: Any) -> tuple[str, str | None]:
    if text in LEVELS:
        return str(text), None
    return RESTRICTED, "must be one of privileged, baseline, restricted"


def parse_version(text: Any) -> tuple[Version, str | None]:
    if text == "latest":
        return None, None
    m = _VERSION.match(text) if isinstance(text, str) else None
    if not m:
        return None, 'must be "latest" or "v1.x"'
    return (1, int(m.group(1))), None


def policy_to_evaluate(labels: Any, defaults: Policy = DEFAULTS) -> tuple[Policy, list[val.Cause]]:
    """``api.PolicyToEvaluate``: the namespace's labels over the defaults, and a 422 cause per invalid value. An
    invalid enforce level evaluates as restricted, an invalid audit/warn level as privileged (fail open); an unset
    warn follows an explicitly stricter enforce level (and its version, unless warn-version is set)."""
    labels = labels if isinstance(labels, dict) else {}
    modes = {m: [getattr(defaults, m).level, getattr(defaults, m).version] for m in MODES}
    errs: list[val.Cause] = []
    has_enforce_level = False
    for mode in MODES:
        key = PREFIX + mode
        if key in labels:
            level, err = parse_level(labels[key])
            modes[mode][0] = level if err is None or mode == "enforce" else PRIVILEGED
            has_enforce_level = has_enforce_level or (mode == "enforce" and err is None)
            if err:
                errs.append(val.invalid_value(f"metadata.labels[{key}]", labels[key], err))
        if key + "-version" in labels:
            version, err = parse_version(labels[key + "-version"])
            modes[mode][1] = version
            if err:
                errs.append(val.invalid_value(f"metadata.labels[{key}-version]", labels[key + "-version"], err))
    if PREFIX + "warn" not in labels and has_enforce_level and compare_levels(modes["enforce"][0], modes["warn"][0]) > 0:
        modes["warn"][0] = modes["enforce"][0]
        if PREFIX + "warn-version" not in labels:
            modes["warn"][1] = modes["enforce"][1]
    return Policy(*(LevelVersion(*modes[m]) for m in MODES)), errs


# -- the pod spec, read as Go would have decoded it ------------------------------------------------------------------

def _d(x: Any) -> Obj:
    return x if isinstance(x, dict) else {}


def _l(x: Any) -> list[Any]:
    return x if isinstance(x, list) else []


def containers(spec: Obj) -> list[Obj]:
    """``visitContainers``: init containers, containers, ephemeral containers."""
    return [c for key in ("initContainers", "containers", "ephemeralContainers") for c in _l(spec.get(key))
            if isinstance(c, dict)]


def _name(c: Obj) -> str:
    return str(c.get("name") or "")


def _sc(c: Obj) -> Obj:
    return _d(c.get("securityContext"))


def join_quote(items: Iterable[str]) -> str:
    items = list(items)
    return '"' + '", "'.join(items) + '"' if items else ""


def plural(singular: str, many: str, n: int) -> str:
    return singular if n == 1 else many


def _containers_phrase(names: list[str]) -> str:
    return f"{plural('container', 'containers', len(names))} {join_quote(names)}"


def _go_quote(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _windows(spec: Obj) -> bool:
    return _d(spec.get("os")).get("name") == "windows"


def _user_namespace(spec: Obj) -> bool:
    return spec.get("hostUsers") is False


Result = tuple[str, str] | None  # (reason, detail) when forbidden
CheckFn = Callable[[Obj, Obj], Result]


# -- baseline checks ---------------------------------------------------------------------------------------------------

def app_armor_profile(meta: Obj, spec: Obj) -> Result:
    def allowed(t: Any) -> bool:
        return t in ("RuntimeDefault", "Localhost")

    setters: list[str] = []
    values: set[str] = set()
    profile = _d(_d(spec.get("securityContext")).get("appArmorProfile"))
    if _d(spec.get("securityContext")).get("appArmorProfile") is not None and not allowed(profile.get("type")):
        setters.append("pod")
        values.add(str(profile.get("type") or ""))
    bad = []
    for c in containers(spec):
        if _sc(c).get("appArmorProfile") is not None and not allowed(_d(_sc(c).get("appArmorProfile")).get("type")):
            bad.append(_name(c))
            values.add(str(_d(_sc(c).get("appArmorProfile")).get("type") or ""))
    if bad:
        setters.append(_containers_phrase(bad))
    annotations = sorted(f"{k}={_go_quote(str(v))}" for k, v in _d(meta.get("annotations")).items()
                         if k.startswith("container.apparmor.security.beta.kubernetes.io/")
                         and not (not v or v == "runtime/default" or str(v).startswith("localhost/")))
    value_list = sorted(values) + annotations
    if annotations:
        setters.append(plural("annotation", "annotations", len(annotations)))
    if setters:
        return (plural("forbidden AppArmor profile", "forbidden AppArmor profiles", len(value_list)),
                f"{' and '.join(setters)} must not set AppArmor profile type to {join_quote(value_list)}")
    return None


CAPABILITIES_ALLOWED = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
                        "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}


def capabilities_baseline(meta: Obj, spec: Obj) -> Result:
    bad, caps = [], set()
    for c in containers(spec):
        added = [str(x) for x in _l(_d(_sc(c).get("capabilities")).get("add")) if str(x) not in CAPABILITIES_ALLOWED]
        if added:
            bad.append(_name(c))
            caps.update(added)
    if bad:
        return ("non-default capabilities",
                f"{_containers_phrase(bad)} must not include {join_quote(sorted(caps))} in securityContext.capabilities.add")
    return None


def host_namespaces(meta: Obj, spec: Obj) -> Result:
    used = [f"{k}=true" for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k) is True]
    return ("host namespaces", ", ".join(used)) if used else None


def host_path_volumes(meta: Obj, spec: Obj) -> Result:
    names = [str(v.get("name") or "") for v in _l(spec.get("volumes")) if isinstance(v, dict) and v.get("hostPath") is not None]
    return ("hostPath volumes", f"{plural('volume', 'volumes', len(names))} {join_quote(names)}") if names else None


def host_ports(meta: Obj, spec: Obj) -> Result:
    bad, ports = [], set()
    for c in containers(spec):
        used = [str(p.get("hostPort")) for p in _l(c.get("ports")) if isinstance(p, dict) and p.get("hostPort") not in (None, 0)]
        if used:
            bad.append(_name(c))
            ports.update(used)
    if bad:
        return ("hostPort", f"{_containers_phrase(bad)} {plural('uses', 'use', len(bad))} "
                            f"{plural('hostPort', 'hostPorts', len(ports))} {', '.join(sorted(ports))}")
    return None


def host_probes_and_host_lifecycle(meta: Obj, spec: Obj) -> Result:
    def hosts(handler: Any) -> list[str]:
        h = _d(handler)
        return [str(_d(h.get(k)).get("host")) for k in ("httpGet", "tcpSocket") if _d(h.get(k)).get("host")]

    bad, forbidden = set(), set()
    for c in containers(spec):
        found = [x for key in ("livenessProbe", "readinessProbe", "startupProbe") for x in hosts(c.get(key))]
        found += [x for key in ("postStart", "preStop") for x in hosts(_d(c.get("lifecycle")).get(key))]
        if found:
            bad.add(_name(c))
            forbidden.update(found)
    if bad:
        return ("probe or lifecycle host",
                f"{plural('container', 'containers', len(bad))} {join_quote(sorted(bad))} {plural('uses', 'use', len(bad))} "
                f"{plural('probe or lifecycle host', 'probe or lifecycle hosts', len(forbidden))} {join_quote(sorted(forbidden))}")
    return None


def privileged(meta: Obj, spec: Obj) -> Result:
    bad = [_name(c) for c in containers(spec) if _sc(c).get("privileged") is True]
    return ("privileged", f"{_containers_phrase(bad)} must not set securityContext.privileged=true") if bad else None


def proc_mount(meta: Obj, spec: Obj) -> Result:
    bad, types = [], set()
    for c in containers(spec):
        pm = _sc(c).get("procMount")
        if pm is not None and pm != "Default":
            bad.append(_name(c))
            types.add(str(pm))
    if bad:
        return ("procMount", f"{_containers_phrase(bad)} must not set securityContext.procMount to {join_quote(sorted(types))}")
    return None


def proc_mount_1_35(meta: Obj, spec: Obj) -> Result:
    return None if _user_namespace(spec) else proc_mount(meta, spec)


def _se_linux(allowed_types: set[str]) -> CheckFn:
    def check(meta: Obj, spec: Obj) -> Result:
        bad_types: set[str] = set()
        flags = {"user": False, "role": False}

        def valid(opts: Obj) -> bool:
            ok = True
            if str(opts.get("type") or "") not in allowed_types:
                ok = False
                bad_types.add(str(opts.get("type") or ""))
            for k in ("user", "role"):
                if opts.get(k):
                    ok, flags[k] = False, True
            return ok

        setters = []
        pod_sc = _d(spec.get("securityContext"))
        if pod_sc.get("seLinuxOptions") is not None and not valid(_d(pod_sc.get("seLinuxOptions"))):
            setters.append("pod")
        bad = [_name(c) for c in containers(spec)
               if _sc(c).get("seLinuxOptions") is not None and not valid(_d(_sc(c).get("seLinuxOptions")))]
        if bad:
            setters.append(_containers_phrase(bad))
        if not setters:
            return None
        data = [f"{plural('type', 'types', len(bad_types))} {join_quote(sorted(bad_types))}"] if bad_types else []
        data += [f"{k} may not be set" for k in ("user", "role") if flags[k]]
        return ("seLinuxOptions", f"{' and '.join(setters)} set forbidden securityContext.seLinuxOptions: {'; '.join(data)}")
    return check


SELINUX_TYPES_1_0 = {"", "container_t", "container_init_t", "container_kvm_t"}
SELINUX_TYPES_1_31 = SELINUX_TYPES_1_0 | {"container_engine_t"}


def _valid_seccomp(t: Any) -> bool:
    return t in ("Localhost", "RuntimeDefault")


def seccomp_baseline_1_0(meta: Obj, spec: Obj) -> Result:
    annotations = _d(meta.get("annotations"))

    def ok(v: Any) -> bool:
        return v in ("runtime/default", "docker/default") or str(v).startswith("localhost/")

    forbidden = set()
    key = "seccomp.security.alpha.kubernetes.io/pod"
    if key in annotations and not ok(annotations[key]):
        forbidden.add(f"{key}={_go_quote(str(annotations[key]))}")
    for c in containers(spec):
        key = "container.seccomp.security.alpha.kubernetes.io/" + _name(c)
        if key in annotations and not ok(annotations[key]):
            forbidden.add(f"{key}={_go_quote(str(annotations[key]))}")
    if forbidden:
        return ("seccompProfile", f"forbidden {plural('annotation', 'annotations', len(forbidden))} {', '.join(sorted(forbidden))}")
    return None


def _seccomp(spec: Obj, restricted: bool) -> Result:
    setters: list[str] = []
    values: set[str] = set()
    pod_set = False
    pod_profile = _d(spec.get("securityContext")).get("seccompProfile")
    if pod_profile is not None:
        if not _valid_seccomp(_d(pod_profile).get("type")):
            setters.append("pod")
            values.add(str(_d(pod_profile).get("type") or ""))
        else:
            pod_set = True
    explicit, implicit = [], []
    for c in containers(spec):
        profile = _sc(c).get("seccompProfile")
        if profile is not None:
            if not _valid_seccomp(_d(profile).get("type")):
                explicit.append(_name(c))
                values.add(str(_d(profile).get("type") or ""))
        elif not pod_set:
            implicit.append(_name(c))
    if explicit:
        setters.append(_containers_phrase(explicit))
    if setters:
        return ("seccompProfile", f"{' and '.join(setters)} must not set securityContext.seccompProfile.type to "
                                  f"{join_quote(sorted(values))}")
    if restricted and implicit:
        return ("seccompProfile", f"pod or {_containers_phrase(implicit)} must set securityContext.seccompProfile.type to "
                                  '"RuntimeDefault" or "Localhost"')
    return None


def seccomp_baseline_1_19(meta: Obj, spec: Obj) -> Result:
    return _seccomp(spec, restricted=False)


SYSCTLS_1_0 = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
               "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start"}
SYSCTLS_1_27 = SYSCTLS_1_0 | {"net.ipv4.ip_local_reserved_ports"}
SYSCTLS_1_29 = SYSCTLS_1_27 | {"net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                               "net.ipv4.tcp_keepalive_probes"}
SYSCTLS_1_32 = SYSCTLS_1_29 | {"net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"}
SYSCTLS_1_37 = SYSCTLS_1_32 | {"net.ipv4.tcp_slow_start_after_idle", "net.ipv4.tcp_notsent_lowat"}


def _sysctls(allowed: set[str]) -> CheckFn:
    def check(meta: Obj, spec: Obj) -> Result:
        bad = [str(s.get("name")) for s in _l(_d(spec.get("securityContext")).get("sysctls"))
               if isinstance(s, dict) and s.get("name") not in allowed]
        return ("forbidden sysctls", ", ".join(bad)) if bad else None
    return check


def windows_host_process(meta: Obj, spec: Obj) -> Result:
    bad = [_name(c) for c in containers(spec) if _d(_sc(c).get("windowsOptions")).get("hostProcess") is True]
    setters = ["pod"] if _d(_d(spec.get("securityContext")).get("windowsOptions")).get("hostProcess") is True else []
    if bad:
        setters.append(_containers_phrase(bad))
    if setters:
        return ("hostProcess", f"{' and '.join(setters)} must not set securityContext.windowsOptions.hostProcess=true")
    return None


# -- restricted checks -------------------------------------------------------------------------------------------------

def allow_privilege_escalation_1_8(meta: Obj, spec: Obj) -> Result:
    bad = [_name(c) for c in containers(spec) if _sc(c).get("allowPrivilegeEscalation") is not False]
    if bad:
        return ("allowPrivilegeEscalation != false",
                f"{_containers_phrase(bad)} must set securityContext.allowPrivilegeEscalation=false")
    return None


def _not_windows(check: CheckFn) -> CheckFn:
    """The 1.25 versions: a pod with ``spec.os.name: windows`` is exempt (validation refuses the field for it)."""
    def windows_exempt(meta: Obj, spec: Obj) -> Result:
        return None if _windows(spec) else check(meta, spec)
    return windows_exempt


def _relaxed_in_user_namespace(check: CheckFn) -> CheckFn:
    """The 1.35 versions: a pod with ``hostUsers: false`` is exempt."""
    def user_namespace_exempt(meta: Obj, spec: Obj) -> Result:
        return None if _user_namespace(spec) else check(meta, spec)
    return user_namespace_exempt


def capabilities_restricted_1_22(meta: Obj, spec: Obj) -> Result:
    missing_drop, adding, caps = [], [], set()
    for c in containers(spec):
        capabilities = _sc(c).get("capabilities")
        if capabilities is None:
            missing_drop.append(_name(c))
            continue
        if "ALL" not in _l(_d(capabilities).get("drop")):
            missing_drop.append(_name(c))
        added = [str(x) for x in _l(_d(capabilities).get("add")) if x != "NET_BIND_SERVICE"]
        if added:
            adding.append(_name(c))
            caps.update(added)
    details = []
    if missing_drop:
        details.append(f'{_containers_phrase(missing_drop)} must set securityContext.capabilities.drop=["ALL"]')
    if adding:
        details.append(f"{_containers_phrase(adding)} must not include {join_quote(sorted(caps))} in "
                       "securityContext.capabilities.add")
    return ("unrestricted capabilities", "; ".join(details)) if details else None


SAFE_VOLUMES = ("configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "image", "persistentVolumeClaim", "projected",
                "secret")
RESTRICTED_VOLUME_TYPES = ("hostPath", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "nfs", "iscsi", "glusterfs",
                           "rbd", "flexVolume", "cinder", "cephfs", "flocker", "fc", "azureFile", "vsphereVolume", "quobyte",
                           "azureDisk", "photonPersistentDisk", "portworxVolume", "scaleIO", "storageos")


def restricted_volumes(meta: Obj, spec: Obj) -> Result:
    bad, types = [], set()
    for v in _l(spec.get("volumes")):
        if not isinstance(v, dict) or any(v.get(k) is not None for k in SAFE_VOLUMES):
            continue
        bad.append(str(v.get("name") or ""))
        types.add(next((k for k in RESTRICTED_VOLUME_TYPES if v.get(k) is not None), "unknown"))
    if bad:
        return ("restricted volume types",
                f"{plural('volume', 'volumes', len(bad))} {join_quote(bad)} {plural('uses', 'use', len(bad))} "
                f"{plural('restricted volume type', 'restricted volume types', len(types))} {join_quote(sorted(types))}")
    return None


def run_as_non_root(meta: Obj, spec: Obj) -> Result:
    setters = []
    pod_value = _d(spec.get("securityContext")).get("runAsNonRoot")
    if pod_value is False:
        setters.append("pod")
    explicit, implicit = [], []
    for c in containers(spec):
        value = _sc(c).get("runAsNonRoot")
        if value is not None:
            if value is False:
                explicit.append(_name(c))
        elif pod_value is not True:
            implicit.append(_name(c))
    if explicit:
        setters.append(_containers_phrase(explicit))
    if setters:
        return ("runAsNonRoot != true", f"{' and '.join(setters)} must not set securityContext.runAsNonRoot=false")
    if implicit:
        return ("runAsNonRoot != true", f"pod or {_containers_phrase(implicit)} must set securityContext.runAsNonRoot=true")
    return None


def _root(uid: Any) -> bool:
    return uid == 0 and not isinstance(uid, bool)


def run_as_user(meta: Obj, spec: Obj) -> Result:
    setters = ["pod"] if _root(_d(spec.get("securityContext")).get("runAsUser")) else []
    bad = [_name(c) for c in containers(spec) if _root(_sc(c).get("runAsUser"))]
    if bad:
        setters.append(_containers_phrase(bad))
    return ("runAsUser=0", f"{' and '.join(setters)} must not set runAsUser=0") if setters else None


def seccomp_restricted_1_19(meta: Obj, spec: Obj) -> Result:
    return _seccomp(spec, restricted=True)


# -- the registry (policy/registry.go) -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    id: str
    level: str
    versions: tuple[tuple[tuple[int, int], CheckFn, tuple[str, ...]], ...]  # (minimum version, check, overrides)


def _v(*versions: tuple[tuple[int, int], CheckFn] | tuple[tuple[int, int], CheckFn, tuple[str, ...]]) -> tuple:
    return tuple((v[0], v[1], v[2] if len(v) > 2 else ()) for v in versions)


CHECKS = (
    Check("appArmorProfile", BASELINE, _v(((1, 0), app_armor_profile))),
    Check("capabilities_baseline", BASELINE, _v(((1, 0), capabilities_baseline))),
    Check("hostNamespaces", BASELINE, _v(((1, 0), host_namespaces))),
    Check("hostPathVolumes", BASELINE, _v(((1, 0), host_path_volumes))),
    Check("hostPorts", BASELINE, _v(((1, 0), host_ports))),
    Check("hostProbesAndHostLifecycle", BASELINE, _v(((1, 34), host_probes_and_host_lifecycle))),
    Check("privileged", BASELINE, _v(((1, 0), privileged))),
    Check("procMount", BASELINE, _v(((1, 0), proc_mount), ((1, 35), proc_mount_1_35))),
    Check("seLinuxOptions", BASELINE, _v(((1, 0), _se_linux(SELINUX_TYPES_1_0)), ((1, 31), _se_linux(SELINUX_TYPES_1_31)))),
    Check("seccompProfile_baseline", BASELINE, _v(((1, 0), seccomp_baseline_1_0), ((1, 19), seccomp_baseline_1_19))),
    Check("sysctls", BASELINE, _v(((1, 0), _sysctls(SYSCTLS_1_0)), ((1, 27), _sysctls(SYSCTLS_1_27)),
                                  ((1, 29), _sysctls(SYSCTLS_1_29)), ((1, 32), _sysctls(SYSCTLS_1_32)),
                                  ((1, 37), _sysctls(SYSCTLS_1_37)))),
    Check("windowsHostProcess", BASELINE, _v(((1, 0), windows_host_process))),
    Check("allowPrivilegeEscalation", RESTRICTED, _v(((1, 8), allow_privilege_escalation_1_8),
                                                     ((1, 25), _not_windows(allow_privilege_escalation_1_8)))),
    Check("capabilities_restricted", RESTRICTED, _v(((1, 22), capabilities_restricted_1_22, ("capabilities_baseline",)),
                                                    ((1, 25), _not_windows(capabilities_restricted_1_22),
                                                     ("capabilities_baseline",)))),
    Check("procMount_restricted", RESTRICTED, _v(((1, 35), proc_mount, ("procMount",)))),
    Check("restrictedVolumes", RESTRICTED, _v(((1, 0), restricted_volumes, ("hostPathVolumes",)))),
    Check("runAsNonRoot", RESTRICTED, _v(((1, 0), run_as_non_root), ((1, 35), _relaxed_in_user_namespace(run_as_non_root)))),
    Check("runAsUser", RESTRICTED, _v(((1, 23), run_as_user), ((1, 35), _relaxed_in_user_namespace(run_as_user)))),
    Check("seccompProfile_restricted", RESTRICTED, _v(((1, 19), seccomp_restricted_1_19, ("seccompProfile_baseline",)),
                                                      ((1, 25), _not_windows(seccomp_restricted_1_19),
                                                       ("seccompProfile_baseline",)))),
)
ORDERED_IDS = sorted(c.id for c in CHECKS if c.level == BASELINE) + sorted(c.id for c in CHECKS if c.level == RESTRICTED)


@cache
def checks_for(level: str, version: Version) -> tuple[tuple[str, CheckFn], ...]:
    """The checks a level:version runs, in upstream's order (baseline IDs sorted, then restricted IDs sorted)."""
    if level == PRIVILEGED:
        return ()
    v = MAX_VERSION if version is None or version > MAX_VERSION else version
    active: dict[str, tuple[str, CheckFn, tuple[str, ...]]] = {}
    for check in CHECKS:
        current = [x for x in check.versions if x[0] <= v]
        if current:
            active[check.id] = (check.level, current[-1][1], current[-1][2])
    wanted = {BASELINE} if level == BASELINE else {BASELINE, RESTRICTED}
    overridden = {o for lvl, _, overrides in active.values() if lvl == RESTRICTED for o in overrides} \
        if level == RESTRICTED else set()
    return tuple((cid, active[cid][1]) for cid in ORDERED_IDS
                 if cid in active and active[cid][0] in wanted and cid not in overridden)


def evaluate(lv: LevelVersion, meta: Any, spec: Any) -> list[tuple[str, str]]:
    """``EvaluatePod`` + ``AggregateCheckResults``: the (reason, detail) of every check that forbids."""
    meta, spec = _d(meta), _d(spec)
    out = []
    for _, fn in checks_for(lv.level, lv.version):
        r = fn(meta, spec)
        if r is not None:
            out.append((r[0] or "unknown forbidden reason", r[1]))
    return out


def forbidden_reason(results: list[tuple[str, str]]) -> str:
    return ", ".join(r for r, _ in results)


def forbidden_detail(results: list[tuple[str, str]]) -> str:
    return ", ".join(f"{r} ({d})" if d else r for r, d in results)


# -- the admission plugin ------------------------------------------------------------------------------------------

def _namespace_labels(store: Any, namespace: str) -> Obj | None:
    ns = store.try_get("v1/namespaces", "", namespace, copy=False)  # read only
    return None if ns is None else _d(ns.get("metadata", {}).get("labels"))


def template_of(kind: str, obj: Obj) -> tuple[Obj, Obj] | None:
    """``DefaultPodSpecExtractor``: the pod template's metadata and spec (None when there is no template)."""
    if kind == "PodTemplate":
        tmpl = obj.get("template")
    elif kind == "CronJob":
        tmpl = _d(_d(_d(obj.get("spec")).get("jobTemplate")).get("spec")).get("template")
    else:
        tmpl = _d(obj.get("spec")).get("template")
    if tmpl is None:
        return None
    return _d(_d(tmpl).get("metadata")), _d(_d(tmpl).get("spec"))


def _warn(policy: Policy, meta: Obj, spec: Obj, warnings: list[str] | None) -> None:
    if warnings is None:
        return
    results = evaluate(policy.warn, meta, spec)
    if results:
        text = f'would violate PodSecurity "{policy.warn}": {forbidden_detail(results)}'
        if text not in warnings:
            warnings.append(text)


def check_pod(store: Any, pod: Obj, namespace: str, warnings: list[str] | None = None) -> None:
    """``ValidatePod``: 403 when the namespace's enforce level forbids the pod; else its warn level's warnings.
    (Validating admission runs after validation upstream; the lab's chain runs before it, so a pod validation refuses
    is left to validation's 422.)"""
    if namespace in EXEMPT_NAMESPACES:
        return
    labels = _namespace_labels(store, namespace)
    if labels is None:
        return  # the create itself answers 404
    policy, errs = policy_to_evaluate(labels)
    if not errs and policy.fully_privileged():
        return
    meta, spec = _d(pod.get("metadata")), _d(pod.get("spec"))
    results = evaluate(policy.enforce, meta, spec)
    if results and not val.pod(pod):  # an invalid pod gets validation's 422 first, as in kube-apiserver
        name = str(meta.get("name") or "")
        raise APIError(403, "Forbidden", f'pods "{name}" is forbidden: violates PodSecurity "{policy.enforce}": '
                                         f"{forbidden_detail(results)}", details={"name": name, "kind": "pods"})
    _warn(policy, meta, spec, warnings)


def check_workload(store: Any, kind: str, obj: Obj, namespace: str, warnings: list[str] | None) -> None:
    """``ValidatePodController``: only warn (audit is not kept); never refuses."""
    if namespace in EXEMPT_NAMESPACES or warnings is None:
        return
    labels = _namespace_labels(store, namespace)
    if labels is None:
        return
    policy, errs = policy_to_evaluate(labels)
    if not errs and policy.warn.level == PRIVILEGED and policy.audit.level == PRIVILEGED:
        return
    template = template_of(kind, obj)
    if template is not None:
        _warn(policy, *template, warnings)


def exempt_namespace_warning(name: str, policy: Policy, labels: Obj) -> str:
    if policy.fully_privileged() or policy.equivalent(DEFAULTS):
        return ""
    parts = []
    for mode in MODES:
        lv = getattr(policy, mode)
        if lv.level != PRIVILEGED and (PREFIX + mode in labels or PREFIX + mode + "-version" in labels):
            parts.append(f"{mode}={lv}")
    return f'namespace "{name}" is exempt from Pod Security, and the policy ({", ".join(parts)}) will be ignored'


def check_namespace(store: Any, ns: Obj, old: Obj | None, warnings: list[str] | None) -> None:
    """``ValidateNamespace`` on create (``old`` None) and update."""
    meta = _d(ns.get("metadata"))
    name = str(meta.get("name") or "")
    labels = _d(meta.get("labels"))
    new_policy, new_errs = policy_to_evaluate(labels)
    if old is None:
        if new_errs:
            raise val_invalid(name, new_errs)
        if name in EXEMPT_NAMESPACES:
            _add(warnings, exempt_namespace_warning(name, new_policy, labels))
        return
    old_policy, old_errs = policy_to_evaluate(_d(_d(old.get("metadata")).get("labels")))
    if new_errs and (not old_errs or new_errs != old_errs):
        raise val_invalid(name, new_errs)
    new, prev = new_policy.enforce, old_policy.enforce
    if new == prev or new.level == PRIVILEGED or (new.version == prev.version and compare_levels(new.level, prev.level) < 1):
        return
    if name in EXEMPT_NAMESPACES:
        _add(warnings, exempt_namespace_warning(name, new_policy, labels))
        return
    for w in evaluate_pods_in_namespace(store, name, new):
        _add(warnings, w)


def _add(warnings: list[str] | None, text: str) -> None:
    if warnings is not None and text and text not in warnings:
        warnings.append(text)


def val_invalid(name: str, causes: list[val.Cause]) -> APIError:
    from . import errors

    return errors.invalid("Namespace", name, causes)


def _controller_uid(pod: Obj) -> str | None:
    return next((r.get("uid") for r in _l(_d(pod.get("metadata")).get("ownerReferences"))
                 if isinstance(r, dict) and r.get("controller") is True), None)


def evaluate_pods_in_namespace(store: Any, namespace: str, enforce: LevelVersion,
                               clock: Callable[[], float] = time.monotonic) -> list[str]:
    """``EvaluatePodsInNamespace``: one line per distinct violation among the namespace's pods (one pod per
    controller first), led by a summary line."""
    deadline = clock() + POD_CHECK_TIMEOUT
    pods, *_ = store.list("v1/pods", namespace, copy=False)  # read only
    first, duplicates, seen = [], [], set()
    for p in pods:
        uid = _controller_uid(p)
        if uid is None or uid not in seen:
            first.append(p)
            if uid is not None:
                seen.add(uid)
        else:
            duplicates.append(p)
    ordered = (first + duplicates)[:MAX_PODS_TO_CHECK]
    total, checked = len(pods), len(ordered)
    counts: dict[str, list[Any]] = {}  # reason → [first pod name, count]
    for i, p in enumerate(ordered):
        results = evaluate(enforce, p.get("metadata"), p.get("spec"))
        if results:
            reason = forbidden_reason(results)
            name = str(p["metadata"].get("name") or "")
            entry = counts.setdefault(reason, [name, 0])
            entry[0] = min(entry[0], name)
            entry[1] += 1
        if clock() > deadline:
            checked = i + 1
            break
    out = []
    if checked < total:
        out.append(f"new PodSecurity enforce level only checked against the first {checked} of {total} existing pods")
    if counts:
        out.append(f'existing pods in namespace "{namespace}" violate the new PodSecurity enforce level "{enforce}"')
    lines = []
    for reason, (name, n) in counts.items():
        more = "" if n == 1 else " (and 1 other pod)" if n == 2 else f" (and {n - 1} other pods)"
        lines.append(f"{name}{more}: {reason}")
    return out + sorted(lines)


def admit(store: Any, kind: str, group: str, obj: Obj, namespace: str, warnings: list[str] | None = None,
          old: Obj | None = None) -> None:
    """The plugin's ``Validate`` for a create (``old`` None) or an update of the whole object (subresources never come
    here). Raises the 403/422 APIError; appends warnings to ``warnings`` (None: a controller's own request)."""
    if not isinstance(obj, dict):
        return
    if kind == "Namespace" and group == "":
        check_namespace(store, obj, old, warnings)
    elif kind == "Pod" and group == "":
        if old is not None and not significant_pod_update(obj, old):
            return
        check_pod(store, obj, namespace, warnings)
    elif (group, kind) in WORKLOADS:
        check_workload(store, kind, obj, namespace, warnings)


def significant_pod_update(new: Obj, old: Obj) -> bool:
    """``isSignificantPodUpdate``: a container added or removed, or an image changed."""
    ns, os_ = _d(new.get("spec")), _d(old.get("spec"))
    for key in ("containers", "initContainers"):
        a, b = _l(ns.get(key)), _l(os_.get(key))
        if len(a) != len(b) or any(_d(x).get("image") != _d(y).get("image") for x, y in zip(a, b, strict=True)):
            return True
    old_eph = {_d(c).get("name"): _d(c) for c in _l(os_.get("ephemeralContainers"))}
    return any(_d(c).get("name") not in old_eph or _d(c).get("image") != old_eph[_d(c).get("name")].get("image")
               for c in _l(ns.get("ephemeralContainers")))
