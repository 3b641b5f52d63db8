"""The README's examples run as written."""
import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_examples_run():
    text = README.read_text()
    examples = text[text.index("## Example"):]
    namespace: dict = {}
    for block in re.findall(r"```python\n(.*?)```", examples, re.S):
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102
    assert torch.isfinite(namespace["x0"]).all() and namespace["x0"].shape == (2, 4, 4, 8, 8)
    assert namespace["v"].shape == (1, 3, 5, 4, 8, 8)
