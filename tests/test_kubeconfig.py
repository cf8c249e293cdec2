"""kubeconfig files are found and merged as kubectl does — checked against real kubectl — and a mistyped KUBECONFIG
is an error naming the file, never a silent fall back to ~/.kube/config."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kperflab import cluster, doctor
from kperflab.errors import ConfigError
from kperflab.kubeconfig import load

from .test_doctor import VERSION

KUBECTL = shutil.which("kubectl")


def write(path: Path, server: str, *, context: str, current: str | None = None, cluster_name: str | None = None,
          ca: str | None = None) -> Path:
    cname = cluster_name or f"{context}-cluster"
    cl: dict = {"server": server}
    if ca:
        cl["certificate-authority"] = ca
    cfg = {"apiVersion": "v1", "kind": "Config", "clusters": [{"name": cname, "cluster": cl}],
           "users": [{"name": f"{context}-user", "user": {"token": f"tok-{context}"}}],
           "contexts": [{"name": context, "context": {"cluster": cname, "user": f"{context}-user", "namespace": f"ns-{context}"}}]}
    if current:
        cfg["current-context"] = current
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A HOME with its own ~/.kube/config pointing somewhere else (where a silent fallback would go)."""
    h = tmp_path / "home"
    write(h / ".kube" / "config", "https://home.example:6443", context="home", current="home")
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KPERFLAB_HOME", str(tmp_path / "kperflab-home"))
    return h


def test_a_mistyped_kubeconfig_is_an_error_naming_it(home, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/typo.yaml")
    with pytest.raises(ConfigError, match="/nonexistent/typo.yaml"):
        cluster.load()
    rows = {r.name: r for r in doctor.run(timeout=1)}
    assert rows["kubeconfig"].status == "fail" and "/nonexistent/typo.yaml" in rows["kubeconfig"].detail
    assert "home.example" not in " ".join(r.detail for r in rows.values())
    out = subprocess.run([sys.executable, "-m", "kperflab.cli", "clean"], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ))
    assert out.returncode == 1 and "/nonexistent/typo.yaml" in out.stderr and "Traceback" not in out.stderr


def test_an_explicit_missing_file_is_an_error(home):
    with pytest.raises(ConfigError, match="does not exist"):
        load("/nonexistent/other.yaml")


def test_empty_kubeconfig_is_unset(home, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", "")
    assert cluster.load().server == "https://home.example:6443"


def test_merge_first_file_wins_and_missing_ones_are_named(home, tmp_path, monkeypatch):
    a = write(tmp_path / "a.yaml", "https://a.example:6443", context="a", current="a", cluster_name="shared")
    b = write(tmp_path / "b.yaml", "https://b.example:6443", context="b", current="b", cluster_name="shared")
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(tmp_path / "gone.yaml"), str(a), str(b)]))
    loaded = load()
    assert loaded.files == [a, b] and loaded.missing == [tmp_path / "gone.yaml"]
    assert loaded.current_context() == "a" and loaded.contexts() == ["a", "b"]
    conn = cluster.load(context="b")
    assert conn.server == "https://a.example:6443", "the cluster named 'shared' comes from the first file"
    assert conn.namespace == "ns-b" and conn.kubeconfig == os.pathsep.join([str(a), str(b)])
    assert "gone.yaml" in conn.source and "does not exist" in conn.source


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_kperflab_and_kubectl_pick_the_same_cluster(home, tmp_path, monkeypatch):
    a = write(tmp_path / "a.yaml", "https://a.example:6443", context="a", cluster_name="shared")
    b = write(tmp_path / "b.yaml", "https://b.example:6443", context="b", current="b", cluster_name="shared")
    c = write(tmp_path / "c.yaml", "https://c.example:6443", context="c", current="c")
    for value in ([a, b], [b, a], [a, c, b], [c]):
        env = {**os.environ, "KUBECONFIG": os.pathsep.join(map(str, value))}
        monkeypatch.setenv("KUBECONFIG", env["KUBECONFIG"])
        theirs = subprocess.run([KUBECTL, "config", "view", "--minify", "-o",
                                 "jsonpath={.contexts[0].name} {.clusters[0].cluster.server}"],
                                capture_output=True, text=True, env=env, timeout=30)
        assert theirs.returncode == 0, theirs.stderr
        conn = cluster.load()
        assert f"{conn.context} {conn.server}" == theirs.stdout.strip(), value


def test_relative_files_resolve_against_their_kubeconfig(home, tmp_path, fake_api):
    d = tmp_path / "elsewhere"
    d.mkdir()
    shutil.copy(fake_api.ca, d / "ca.crt")
    kc = write(d / "config", f"https://127.0.0.1:{fake_api.port}", context="rel", current="rel", ca="ca.crt")
    fake_api.route("GET", "/version", 200, {**VERSION, "gitVersion": "v1.31.0"})
    conn = cluster.load(str(kc))
    assert conn.api.configuration.ssl_ca_cert == str(d / "ca.crt")
    assert cluster.server_version(conn)["git_version"] == "v1.31.0"


def test_the_lab_fallback_says_so(home, tmp_path, monkeypatch):
    (home / ".kube" / "config").unlink()
    lab_kc = Path(os.environ["KPERFLAB_HOME"]) / "kubeconfig.yaml"
    write(lab_kc, "https://127.0.0.1:1", context="kperflab-lab", current="kperflab-lab")
    conn = cluster.load()
    assert conn.context == "kperflab-lab" and "lab's kubeconfig" in conn.source
    lab_kc.unlink()
    with pytest.raises(ConfigError, match="No kubeconfig found"):
        cluster.load()


def test_the_workshop_starts_the_lab_only_when_nothing_is_configured(home, tmp_path, monkeypatch):
    from kperflab import workshop
    from kperflab.errors import ClusterUnreachable

    # a configured cluster that does not answer is said, not replaced by a lab
    with pytest.raises(ClusterUnreachable):
        workshop.configured_cluster(None, None)  # ~/.kube/config → home.example, which does not resolve here
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/typo.yaml")
    with pytest.raises(ConfigError, match="typo.yaml"):
        workshop.configured_cluster(None, None)
    monkeypatch.delenv("KUBECONFIG")
    (home / ".kube" / "config").unlink()
    start, kc, why = workshop.configured_cluster(None, None)
    assert start and kc is None and "No cluster is configured" in why
    lab_kc = Path(os.environ["KPERFLAB_HOME"]) / "kubeconfig.yaml"
    write(lab_kc, "https://127.0.0.1:1", context="kperflab-lab", current="kperflab-lab")  # a lab that is down
    start, kc, why = workshop.configured_cluster(None, None)
    assert start and "the lab does not answer" in why
