"""User errors on the command line: one line, the field or the registered names, exit code 2, no traceback."""
import sys
from pathlib import Path

import pytest

from seqrender.experiments.configstore import prepare_registry
from seqrender.models import registry

sys.path.insert(0, str(Path(__file__).parent))
from _runs import run  # noqa: E402


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_unknown_posenc_lists_registered_names(tmp_path):
    result = run("model=kaleido", "posenc=nonexistent", data_root=tmp_path)
    assert result.returncode == 2
    lines = _lines(result.stderr + result.stdout)
    assert len(lines) == 1, lines
    prepare_registry()
    assert lines[0] == f"error: unknown posenc 'nonexistent'; registered: {', '.join(registry.names('posenc'))}"
    assert {"gta", "rope", "cape", "plucker", "none"} <= set(registry.names("posenc"))


def test_unknown_name_inside_a_sweep_is_caught(tmp_path):
    result = run("-m", "posenc=rope,bogus", data_root=tmp_path)
    assert result.returncode == 2
    assert _lines(result.stderr + result.stdout)[0].startswith("error: unknown posenc 'bogus'; registered: ")


@pytest.mark.parametrize("override, field, words", [
    ("trainer.lr=-1", "trainer.lr", "greater than 0"),
    ("model.hidden=wide", "model.hidden", "valid integer"),
    ("model.heads=5", "model", "heads=5 must divide hidden"),
    ("trainer.batch_size=3", "trainer", "local_processes=2 must divide batch_size=3"),
])
def test_invalid_field_names_its_path(tmp_path, override, field, words):
    """The main job's two local ranks (trainer.local_processes=2): the launcher checks the config
    before starting them, so the line comes once and no run directory (rank logs) is made."""
    result = run("model=kaleido", "posenc=gta", override, f"hydra.run.dir={tmp_path / 'run'}", data_root=tmp_path)
    assert result.returncode == 2
    lines = _lines(result.stderr + result.stdout)
    assert len(lines) == 1 and "Traceback" not in result.stderr, lines
    assert lines[0].startswith(f"config error: {field}") and words in lines[0], lines[0]
    assert not (tmp_path / "run").exists()
