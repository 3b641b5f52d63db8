"""Sibling seqrender packages resolve to this checkout, so `pip install packages/models` works
from a clone before anything is published (PyPI has no seqrender-* yet)."""
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
SIBLINGS = ["posenc", "attention", "flowmatch", "recon"]


def sibling(name: str) -> str:
    path = HERE.parent / name
    return f"seqrender-{name} @ {path.as_uri()}" if (path / "pyproject.toml").exists() else f"seqrender-{name}"


setup(install_requires=["torch>=2.1", "einops>=0.7", "safetensors>=0.4"] + [sibling(n) for n in SIBLINGS],
      extras_require={"test": ["pytest>=8", "diffusers>=0.30"]})
