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


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Every module a file imports (relative imports resolved to absolute names, `from x import y` giving x and x.y),
    including imports inside functions."""
    import ast

    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[: len(base) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}
    return out


def test_client_modules_never_import_the_lab():
    """The one-way door: only the CLI and the workshop runner may reach into kperflab.lab — checked on every client
    module, the experiments included, for every import form (relative, absolute, inside functions)."""
    allowed = {ROOT / "kperflab" / "cli.py", ROOT / "kperflab" / "workshop.py"}
    checked = 0
    for f in (ROOT / "kperflab").rglob("*.py"):
        if f in allowed or (ROOT / "kperflab" / "lab") in f.parents:
            continue
        checked += 1
        bad = {m for m in imported_modules(f) if m == "kperflab.lab" or m.startswith("kperflab.lab.")}
        assert not bad, f"{f.relative_to(ROOT)} imports {sorted(bad)}"
    assert checked >= 15


def test_import_rule_sees_every_form(tmp_path):
    """The checker itself: a relative import from a subpackage, an absolute one and one inside a function are caught."""
    probe = tmp_path / "kperflab" / "experiments" / "probe.py"
    probe.parent.mkdir(parents=True)
    for source in ("from ..lab import control\n", "from .. import lab\n", "import kperflab.lab.server\n",
                   "def f():\n    from kperflab.lab import labs\n"):
        probe.write_text(source)
        assert any(m == "kperflab.lab" or m.startswith("kperflab.lab.") for m in imported_modules(probe, tmp_path)), source
    probe.write_text("from ..workspace import terminated\nfrom . import Result\n")
    assert imported_modules(probe, tmp_path) == {"kperflab.workspace", "kperflab.workspace.terminated",
                                                  "kperflab.experiments", "kperflab.experiments.Result"}
