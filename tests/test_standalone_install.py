"""Issue 2, acceptance 2: every library installs alone into a fresh venv that holds only torch, and
imports without hydra / pydantic / accelerate / submitit."""
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["posenc", "flowmatch", "attention", "recon", "models"]
APP_ONLY = ("hydra", "omegaconf", "pydantic", "accelerate", "submitit")


@pytest.fixture(scope="module")
def torch_venv(tmp_path_factory):
    path = tmp_path_factory.mktemp("venv")
    venv.create(path, with_pip=True)
    python = path / "bin" / "python"
    version = torch.__version__.split("+")[0]
    result = subprocess.run([python, "-m", "pip", "install", "-q", f"torch=={version}"],
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        pytest.skip(f"torch=={version} cannot be installed into a fresh venv here: {result.stderr[-300:]}")
    return python


@pytest.mark.slow
@pytest.mark.parametrize("name", PACKAGES)
def test_package_installs_alone(torch_venv, name):
    install = subprocess.run([torch_venv, "-m", "pip", "install", "-q", ROOT / "packages" / name],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-2000:]
    probe = (f"import sys, seqrender.{name}; "
             f"bad = [m for m in {APP_ONLY!r} if m in sys.modules]; "
             "assert not bad, f'imported application-only modules: {bad}'")
    run = subprocess.run([torch_venv, "-W", "ignore", "-c", probe], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
