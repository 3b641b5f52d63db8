"""A third-party package registers posenc 'toy' through the entry-point group `seqrender.plugins`;
once pip-installed, `posenc=toy` works on the command line (and is unknown without it).

The plugin is installed into a folder of its own (`pip install --target`) that only these tests'
processes see through PYTHONPATH: the test venv itself is never changed, so tests running at the
same time in other workers (`pytest -n`) see the registry without 'toy'."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from _runs import TINY, run  # noqa: E402

PLUGIN = Path(__file__).parent / "plugins" / "toy_plugin"


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args], check=True,
                   capture_output=True, timeout=180)


@pytest.fixture
def toy_plugin(tmp_path, monkeypatch):
    """The plugin pip-installed into `tmp_path/site`, on PYTHONPATH for the subprocesses of the test."""
    source = shutil.copytree(PLUGIN, tmp_path / "toy_plugin")  # builds write into the source tree
    site = tmp_path / "site"
    _pip("install", "--no-deps", "--no-build-isolation", "--target", str(site), str(source))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))


def test_toy_posenc_from_the_command_line(tmp_path, toy_plugin):
    run_dir = tmp_path / "run"
    result = run(*TINY, "posenc=toy", "posenc.base=50.0", "trainer.steps=2", "trainer.checkpoint_every=2",
                 "eval.num_items=1", f"hydra.run.dir={run_dir}", data_root=tmp_path / "data")
    assert result.returncode == 0, result.stderr[-3000:]
    composed = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    assert composed["posenc"] == {"name": "toy", "base": 50.0}
    assert (run_dir / "metrics.json").is_file()


def test_toy_plugin_is_built_through_the_registry(toy_plugin):
    # The same q and k vector at every position: with RoPE, q_i·k_j depends on i − j only.
    code = ("import torch; from seqrender.models import registry; import seqrender.models.builtins; "
            "registry.load_plugins(); enc = registry.build('posenc', 'toy', {'base': 10.0}, head_dim=8); "
            "g = torch.Generator().manual_seed(0); "
            "q = torch.randn(8, generator=g).expand(1, 1, 6, 8); k = torch.randn(8, generator=g).expand(1, 1, 6, 8); "
            "q2, k2, v2 = enc.spatial(torch.zeros(6, 2)).transform_qkv(q, k, k); "
            "s = q2[0, 0] @ k2[0, 0].T; "
            "print(float((s[1:, 1:] - s[:-1, :-1]).abs().max()), float((s[0, 1] - q[0, 0, 0] @ k[0, 0, 0]).abs()), "
            "float((v2 - k).abs().max()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    shift_error, offset_change, value_change = map(float, out.stdout.split())
    assert shift_error < 1e-5          # relative positions only
    assert offset_change > 1e-3        # ... and positions do matter
    assert value_change == 0.0         # RoPE leaves values alone


def test_toy_is_unknown_without_the_plugin(tmp_path):
    result = run("posenc=toy", data_root=tmp_path)
    assert result.returncode == 2 and "unknown posenc 'toy'" in result.stderr
