"""Find and merge kubeconfig files the way kubectl does (client-go's ``ClientConfigLoadingRules``), so kperflab and
kubectl always talk to the same cluster.

- ``--kubeconfig FILE`` (here: the ``kubeconfig`` argument): that file alone; it must exist.
- else ``$KUBECONFIG`` (when set and not empty): its files, in order, separated by ``:``; missing ones are skipped, as
  kubectl does, but named; when none exists that is an error naming them — never a silent fall back to another file.
- else ``~/.kube/config``.
Merging: for clusters, users and contexts the first file that names an entry wins; ``current-context`` comes from
the first file that sets it. Relative file references (certificate-authority, client-certificate, client-key,
tokenFile) are resolved against the directory of the file that holds them.

Where kubectl would find nothing, kperflab looks further, and says so: the in-cluster service account (in a pod),
then the lab's kubeconfig (``kperflab lab up`` writes it).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import paths
from .errors import ConfigError

NAMED = ("clusters", "users", "contexts")
FILE_FIELDS = {"clusters": ("cluster", ("certificate-authority",)),
               "users": ("user", ("client-certificate", "client-key", "tokenFile"))}
NO_CLUSTER_HINT = (
    "Start the embedded lab with `kperflab lab up` (then `export KUBECONFIG=...` as it prints), "
    "or point --kubeconfig/KUBECONFIG at your cluster."
)


@dataclass
class Loaded:
    """A merged kubeconfig and where it came from."""

    config: dict[str, Any]
    files: list[Path]
    source: str  # "--kubeconfig", "KUBECONFIG", "~/.kube/config" or "the lab's kubeconfig"
    missing: list[Path] = field(default_factory=list)  # named in KUBECONFIG but absent (skipped, as kubectl does)

    @property
    def value(self) -> str:
        """The files as a KUBECONFIG value: what kubectl needs to see the same merged config."""
        return os.pathsep.join(str(f) for f in self.files)

    def describe(self) -> str:
        what = ", ".join(str(f) for f in self.files)
        note = ""
        if self.missing:
            names = ", ".join(str(m) for m in self.missing)
            note = f"; {names}, named in KUBECONFIG, {'does' if len(self.missing) == 1 else 'do'} not exist (skipped, as kubectl does)"
        return f"{what} (from {self.source}){note}"

    def contexts(self) -> list[str]:
        return [c.get("name") for c in self.config.get("contexts") or [] if isinstance(c, dict)]

    def current_context(self) -> str | None:
        return self.config.get("current-context") or None


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"The kubeconfig {path} cannot be read ({exc.strerror if isinstance(exc, OSError) else exc}).",
                          hint="Check its permissions and contents with `kubectl config view`.") from None
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"The kubeconfig {path} cannot be read (not YAML: {first[:160]}).",
                          hint="Check it with `kubectl config view`, or start the lab with `kperflab lab up`.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"The kubeconfig {path} cannot be read (it is a {type(data).__name__}, not a Config).",
                          hint="Check it with `kubectl config view`.")
    for item in NAMED:
        if not isinstance(data.get(item) or [], list):
            raise ConfigError(f"The kubeconfig {path} cannot be read ({item} is not a list).",
                              hint="Check it with `kubectl config view`.")
    return _absolute(data, path.parent)


def _absolute(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Relative file references resolved against the file's own directory (what client-go's ResolvePaths does)."""
    data = copy.deepcopy(data)
    for item, (inner, keys) in FILE_FIELDS.items():
        for entry in data.get(item) or []:
            body = entry.get(inner) if isinstance(entry, dict) else None
            if not isinstance(body, dict):
                continue
            for k in keys:
                v = body.get(k)
                if isinstance(v, str) and v and not os.path.isabs(v):
                    body[k] = str((base / v).resolve())
    return data


def merge(configs: list[dict[str, Any]]) -> dict[str, Any]:
    """kubectl's merge: per name, the first file wins; ``current-context`` from the first file that sets one.

    >>> a = {"current-context": "a", "contexts": [{"name": "a"}, {"name": "x", "context": {"cluster": "from-a"}}]}
    >>> b = {"current-context": "b", "contexts": [{"name": "x", "context": {"cluster": "from-b"}}, {"name": "b"}]}
    >>> m = merge([a, b])
    >>> m["current-context"], [c["name"] for c in m["contexts"]], m["contexts"][1]["context"]["cluster"]
    ('a', ['a', 'x', 'b'], 'from-a')
    """
    out: dict[str, Any] = {"apiVersion": "v1", "kind": "Config", "preferences": {}, **{k: [] for k in NAMED}}
    for cfg in configs:
        for item in NAMED:
            have = {e.get("name") for e in out[item]}
            for entry in cfg.get(item) or []:
                if isinstance(entry, dict) and entry.get("name") not in have:
                    out[item].append(entry)
                    have.add(entry.get("name"))
        if cfg.get("current-context") and not out.get("current-context"):
            out["current-context"] = cfg["current-context"]
    return out


def load(kubeconfig: str | os.PathLike[str] | None = None) -> Loaded | None:
    """The merged kubeconfig kubectl would use, or None when kubectl would have none (no KUBECONFIG, no
    ~/.kube/config): the caller then tries the in-cluster config and the lab's."""
    if kubeconfig:
        text = os.fspath(kubeconfig)
        parts = [text] if Path(text).expanduser().exists() or os.pathsep not in text else text.split(os.pathsep)
        files = [Path(p).expanduser() for p in parts if p]
        missing = [f for f in files if not f.exists()]
        if missing:
            raise ConfigError(f"The kubeconfig {', '.join(map(str, missing))} does not exist.", hint=NO_CLUSTER_HINT)
        return Loaded(merge([_read(f) for f in files]), files, "--kubeconfig")
    env = os.environ.get("KUBECONFIG", "")
    if env:
        named = list(dict.fromkeys(Path(p).expanduser() for p in env.split(os.pathsep) if p))
        present = [f for f in named if f.exists()]
        missing = [f for f in named if not f.exists()]
        if not present:
            raise ConfigError(f"KUBECONFIG names {', '.join(map(str, missing)) or 'no file'}, and "
                              f"{'it does' if len(missing) == 1 else 'none of them does'} not exist.",
                              hint="Fix the path in KUBECONFIG (`echo $KUBECONFIG`), or unset it to use ~/.kube/config.")
        return Loaded(merge([_read(f) for f in present]), present, "KUBECONFIG", missing)
    home = Path.home() / ".kube" / "config"
    if home.exists():
        return Loaded(merge([_read(home)]), [home], "~/.kube/config")
    return None


def load_lab() -> Loaded | None:
    """The lab's kubeconfig, when `kperflab lab up` wrote one: kperflab's last resort where kubectl has nothing."""
    lab = paths.lab_kubeconfig()
    if lab.exists():
        return Loaded(merge([_read(lab)]), [lab], "the lab's kubeconfig, as neither KUBECONFIG nor ~/.kube/config is set")
    return None
