"""Fresh-venv installs, built only from the repo's files (issues 2 and 10).

- Every library installs alone into a venv that holds only torch, and imports without hydra /
  pydantic / accelerate / submitit.
- With its `test` extra, every module its sources and tests import is importable there.
- `scripts/setup.sh` (= `make setup`, what `make run` runs) in a fresh venv gives an environment
  where every module the libraries and the app import is importable (triton, optional, aside), and
  `scripts/setup.sh --test` (what `make test` runs) one where the whole suite collects and every
  module the repo imports is importable.

torch (+ pip, setuptools) comes from one venv per module, installed from the on-disk wheel; each
check gets its own venv without pip, layered on it by a `.pth` file, so nothing installed for one
check leaks into another. pip runs without byte-compiling and without build isolation (the layer's
setuptools builds the repo's packages) to keep the checks short.
"""
import ast
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["posenc", "flowmatch", "attention", "recon", "models"]
APP_ONLY = ("hydra", "omegaconf", "pydantic", "accelerate", "submitit")
REPO_DIRS = ["packages", "experiments", "tests", "benchmarks", "scripts"]
RUNTIME_OPTIONAL = {"triton"}  # not in requirements.txt: attention[triton], or the test set-up


def imported_modules(paths: list[Path]) -> tuple[set[str], set[str]]:
    """(modules imported anywhere in the .py files under `paths`, modules they importorskip).

    Third-party modules by top-level name, seqrender ones as `seqrender.<package>`; relative
    imports, the standard library and modules that are files or folders of the tree are left out.
    """
    files = [f for p in paths for f in ([p] if p.is_file() else p.rglob("*.py")) if ".venv" not in f.parts]
    local = {f.stem for f in files} | {f.parent.name for f in files}  # modules and packages of the tree
    found, skipped = set(), set()
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "importorskip"
                  and node.args and isinstance(node.args[0], ast.Constant)):
                skipped.add(node.args[0].value.split(".")[0])
            for name in names:
                parts = name.split(".")
                found.add(".".join(parts[:2]) if parts[0] == "seqrender" and len(parts) > 1 else parts[0])
    keep = {m for m in found if m.split(".")[0] not in sys.stdlib_module_names | {"__future__"}}
    return {m for m in keep if m.startswith("seqrender.") or m not in local}, skipped


IMPORT_PROBE = """
import importlib, sys
bad = []
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except ImportError as err:
        bad.append(f"{name} ({err})")
print("cannot import: " + "; ".join(bad) if bad else "ok")
sys.exit(1 if bad else 0)
"""


def run(cmd: list, *, cwd: Path | None = None, **env_extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONWARNINGS": "ignore", "PIP_NO_COMPILE": "1",
           "PIP_NO_BUILD_ISOLATION": "0", **env_extra}  # pip reads NO_BUILD_ISOLATION=0 as --no-build-isolation
    env.pop("PYTHONPATH", None)
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=1500, env=env, cwd=cwd)


def check_imports(python: Path, modules: set[str]) -> None:
    probe = run([python, "-c", IMPORT_PROBE, *sorted(modules)], cwd=ROOT)
    assert probe.returncode == 0, probe.stdout[-2000:] + probe.stderr[-2000:]


@pytest.fixture(scope="module")
def torch_site(tmp_path_factory) -> Path:
    """site-packages of a venv holding only torch, pip and setuptools."""
    path = tmp_path_factory.mktemp("torch-venv")
    venv.create(path, with_pip=True)
    version = torch.__version__.split("+")[0]
    result = run([path / "bin" / "python", "-m", "pip", "install", "-q", f"torch=={version}", "setuptools>=68"])
    if result.returncode != 0:
        pytest.skip(f"torch=={version} cannot be installed into a fresh venv here: {result.stderr[-300:]}")
    return next((path / "lib").glob("python*/site-packages"))


@pytest.fixture
def fresh_python(torch_site, tmp_path) -> Path:
    """A new venv that sees the torch venv's packages (pip among them) and nothing else."""
    path = tmp_path / "venv"
    venv.create(path, with_pip=False)
    site = next((path / "lib").glob("python*/site-packages"))
    (site / "torch_layer.pth").write_text(str(torch_site) + "\n")
    return path / "bin" / "python"


@pytest.mark.slow
@pytest.mark.parametrize("name", PACKAGES)
def test_package_installs_alone_with_its_test_dependencies(fresh_python, name):
    install = run([fresh_python, "-m", "pip", "install", "-q", f"{ROOT / 'packages' / name}[test]"])
    assert install.returncode == 0, install.stderr[-2000:]
    probe = (f"import sys, seqrender.{name}; "
             f"bad = [m for m in {APP_ONLY!r} if m in sys.modules]; "
             "assert not bad, f'imported application-only modules: {bad}'")
    alone = run([fresh_python, "-W", "ignore", "-c", probe])
    assert alone.returncode == 0, alone.stderr[-2000:]  # the test extra holds no application modules
    modules, optional = imported_modules([ROOT / "packages" / name / "src", ROOT / "packages" / name / "tests"])
    check_imports(fresh_python, {m for m in modules if m not in optional})


@pytest.mark.slow
def test_setup_script_gives_a_venv_where_the_suite_imports(fresh_python):
    # `make run`'s set-up (requirements.txt): everything the libraries and the app import, but for
    # the optional triton (attention[triton]: the view-time dispatcher checks for it)
    setup = run(["bash", ROOT / "scripts" / "setup.sh"], cwd=ROOT, PYTHON=str(fresh_python))
    assert setup.returncode == 0, setup.stderr[-2000:]
    app, _ = imported_modules([ROOT / "packages" / name / "src" for name in PACKAGES] + [ROOT / "experiments"])
    check_imports(fresh_python, app - RUNTIME_OPTIONAL)
    # `make test`'s set-up adds requirements-test.txt
    setup = run(["bash", ROOT / "scripts" / "setup.sh", "--test"], cwd=ROOT, PYTHON=str(fresh_python))
    assert setup.returncode == 0, setup.stderr[-2000:]
    collect = run([fresh_python, "-m", "pytest", "--collect-only", "-q"], cwd=ROOT)
    assert collect.returncode == 0, collect.stdout[-3000:] + collect.stderr[-1000:]
    modules, optional = imported_modules([ROOT / d for d in REPO_DIRS])
    check_imports(fresh_python, modules | optional)  # importorskip'd peers too: CI runs the parity tests


def test_import_scan_finds_nested_and_skipped_imports(tmp_path):
    """The scanner itself: function-local imports count, importorskip'd ones are optional."""
    (tmp_path / "helper.py").write_text("X = 1\n")
    (tmp_path / "test_x.py").write_text(
        "import os\nimport helper\nfrom seqrender.posenc.rope import apply_rope\n"
        "def f():\n    from tqdm.auto import tqdm\n    import pytest\n    pytest.importorskip('triton.language')\n")
    modules, optional = imported_modules([tmp_path])
    assert modules == {"tqdm", "pytest", "seqrender.posenc"} and optional == {"triton"}
