import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"python-kubernetes": "kubernetes"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_environment_yml_names_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_norm(re.split(r"[<>=\[; ]", d)[0]) for d in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {_norm(CONDA_NAMES.get(re.split(r"[<>= ]", d)[0], re.split(r"[<>= ]", d)[0]))
             for d in env["dependencies"] if isinstance(d, str)} - {"python", "pip"}
    assert conda == wanted


def test_every_dependency_is_pinned_in_the_lock():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lock = {_norm(line.split("==")[0]) for line in (ROOT / "requirements.lock").read_text().splitlines() if "==" in line}
    for dep in project["dependencies"] + project["optional-dependencies"]["dev"]:
        assert _norm(re.split(r"[<>=\[; ]", dep)[0]) in lock, dep


def test_ci_runs_make_test_as_the_readme_says():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make test" in (ROOT / "README.md").read_text()


def test_client_modules_never_import_the_lab():
    """The one-way door: only the CLI and the workshop runner may reach into kperflab.lab."""
    allowed = {"cli.py", "workshop.py"}
    for f in (ROOT / "kperflab").glob("*.py"):
        if f.name in allowed:
            continue
        text = f.read_text()
        assert not re.search(r"^\s*(from\s+(\.|kperflab\.)lab\b|import\s+kperflab\.lab\b)", text, re.M), f.name
