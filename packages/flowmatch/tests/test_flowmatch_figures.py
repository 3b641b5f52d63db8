import json

import pytest

from seqrender.flowmatch.figures import main


def test_figures_script_writes_pngs_and_metrics(tmp_path):
    pytest.importorskip("matplotlib")
    main(["--out", str(tmp_path), "--steps", "8", "--samples", "2000"])
    for name in ("samplers.png", "schedules.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((tmp_path / "figures.json").read_text())
    assert len(metrics["samplers"]) == 6
    assert all(len(ts) == 9 and ts[0] == 1.0 and ts[-1] == 0.0 for ts in metrics["schedules"].values())
    # shifting toward noise moves mass above t = 1/2: uniform 0.5 < shift 3 (0.75) < shift 5 (0.83)
    above = [metrics["samplers"][k]["mass_above_half"] for k in ("(d) Uniform", "(e) Uniform + shift 3", "(f) Uniform + shift 5")]
    assert above[0] < above[1] < above[2]
