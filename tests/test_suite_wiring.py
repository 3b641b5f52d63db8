"""The suite's own wiring (conftest.py): under `make test`'s two xdist workers, every file that uses
the local SLURM fixture runs on the same worker as the others that do."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _conftest():
    spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_file_using_the_local_slurm_shares_one_scope():
    conftest = _conftest()
    users = {p.name for p in (ROOT / "tests").glob("test_*.py") if "local_slurm" in p.read_text()} - {Path(__file__).name}
    assert users, "no test uses the local SLURM fixture any more: drop SLURM_FILES"
    assert users == conftest.SLURM_FILES
    assert {conftest.file_scope(f"tests/{name}::test_x[1]") for name in users} == {"slurm"}
    assert conftest.file_scope("tests/test_e2e_tiny.py::test_y") == "tests/test_e2e_tiny.py"
