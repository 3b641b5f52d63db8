"""Summarise an ablation sweep: `python experiments/summarise.py SWEEP_DIR [--out DIR]`.

Reads every job's metrics.json under SWEEP_DIR (a `run.py -m experiment=ablate_*` sweep dir), groups
the trained model's scores by the swept setting, takes the mean and 95 % interval over seeds, and
writes `<name>.md` (table, the paper's direction beside ours, a verdict) and `<name>.png` (bar chart)
into --out (default: SWEEP_DIR), <name> being the experiment (e.g. ablate_posenc). `--baseline DIR`
(repeatable) borrows arms from another sweep or run dir whose config equals this sweep's but for the
swept keys: a sweep run without its baseline arm (`model.window=1,2,4`) takes the paper's choice from
another table's jobs instead of training it again. See docs/ablations/README.md.
"""
import argparse
import sys
from pathlib import Path

from seqrender.experiments import failures
from seqrender.experiments.ablations.collect import borrow_baselines, read_sweep
from seqrender.experiments.ablations.report import bar_chart, markdown
from seqrender.experiments.ablations.summary import summarise_sweep


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="the sweep dir of `run.py -m ...` (hydra.sweep.dir)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for <name>.md and <name>.png (default: SWEEP_DIR)")
    parser.add_argument("--baseline", type=Path, action="append", default=[],
                        help="sweep or run dir to borrow arms from (same config but the swept keys); repeatable")
    args = parser.parse_args(argv)
    with failures.reported(None):
        sweep = read_sweep(args.sweep_dir)
        if args.baseline:
            sweep = borrow_baselines(sweep, args.baseline)
        summary = summarise_sweep(sweep)
        out = args.out or args.sweep_dir
        out.mkdir(parents=True, exist_ok=True)
        chart = out / f"{summary.name}.png"
        bar_chart(summary, chart)
        text = markdown(summary, sweep, args.sweep_dir, chart.name)
        (out / f"{summary.name}.md").write_text(text)
        for job, reason in sweep.skipped:
            print(f"skipped job {job}: {reason}", file=sys.stderr)
        if sweep.not_borrowed:
            print(f"{len(sweep.not_borrowed)} job(s) of the baseline dirs did not fit, e.g. "
                  f"{sweep.not_borrowed[0][0]}: {sweep.not_borrowed[0][1]}", file=sys.stderr)
        print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
