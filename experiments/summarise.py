"""Summarise an ablation sweep: `python experiments/summarise.py SWEEP_DIR [--out DIR]`.

Reads every job's metrics.json under SWEEP_DIR (a `run.py -m experiment=ablate_*` sweep dir), groups
the trained model's scores by the swept setting, takes the mean and 95 % interval over seeds, and
writes `<name>.md` (table, the paper's direction beside ours, a verdict) and `<name>.png` (bar chart)
into --out (default: SWEEP_DIR), <name> being the experiment (e.g. ablate_posenc). See
docs/ablations/README.md.
"""
import argparse
import sys
from pathlib import Path

from seqrender.experiments import failures
from seqrender.experiments.ablations.collect import read_sweep
from seqrender.experiments.ablations.report import bar_chart, markdown
from seqrender.experiments.ablations.summary import summarise_sweep


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="the sweep dir of `run.py -m ...` (hydra.sweep.dir)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for <name>.md and <name>.png (default: SWEEP_DIR)")
    args = parser.parse_args(argv)
    with failures.reported(None):
        sweep = read_sweep(args.sweep_dir)
        summary = summarise_sweep(sweep)
        out = args.out or args.sweep_dir
        out.mkdir(parents=True, exist_ok=True)
        chart = out / f"{summary.name}.png"
        bar_chart(summary, chart)
        text = markdown(summary, sweep, args.sweep_dir, chart.name)
        (out / f"{summary.name}.md").write_text(text)
        for job, reason in sweep.skipped:
            print(f"skipped job {job}: {reason}", file=sys.stderr)
        print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
