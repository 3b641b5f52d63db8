"""Run a curriculum of training stages: `python experiments/curriculum.py <name> [--out DIR] [overrides ...]`.

<name> is a file of experiments/configs/curriculum/ (e.g. `curriculum_tiny`: video pre-training ->
3D fine-tuning at 16 then 32 px); the overrides go to every stage. See
seqrender.experiments.curriculum.
"""
import argparse
import sys
import time
from pathlib import Path

from seqrender.experiments.curriculum import run_curriculum


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="curriculum file name (experiments/configs/curriculum/<name>.yaml) or path")
    parser.add_argument("--out", type=Path, default=None, help="stage run dirs go here (default outputs/curriculum/<name>-<time>)")
    args, overrides = parser.parse_known_args()
    out = args.out or Path("outputs") / "curriculum" / f"{Path(args.name).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        return run_curriculum(args.name, out, overrides)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
