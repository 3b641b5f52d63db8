"""Make the sibling test modules' helpers (scene, make_model, inputs) importable under
--import-mode=importlib: test_models_cuda.py reuses them."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
