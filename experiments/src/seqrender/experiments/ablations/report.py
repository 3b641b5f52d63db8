"""A sweep summary as a markdown table and a bar chart (PNG)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from seqrender.experiments.ablations.collect import Sweep  # noqa: E402
from seqrender.experiments.ablations.summary import METRICS, Score, Summary, arm_label  # noqa: E402
from seqrender.experiments.checkpoint import atomic_write  # noqa: E402

DIGITS = {"psnr": 2, "ssim": 3, "seconds": 3}
NAMES = {"psnr": "PSNR dB", "ssim": "SSIM"}
PAPER_SETTING = {"1->3": "1→5", "3->1": "5→1"}


def settings_of(summary: Summary) -> list[str]:
    return list(dict.fromkeys(s for arm in summary.arms for s in arm.scores))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def cell(score: Score | None, metric: str) -> str:
    """"mean [lo, hi]" with the metric's digits; the mean alone when there is no interval (one value)."""
    if score is None:
        return "n/a"
    d = DIGITS[metric]
    if score.lo == score.hi:
        return f"{score.mean:.{d}f}"
    return f"{score.mean:.{d}f} [{score.lo:.{d}f}, {score.hi:.{d}f}]"


def markdown(summary: Summary, sweep: Sweep, sweep_dir: Path, chart: str) -> str:
    """The whole summary page: provenance, scores per arm, verdicts against the paper, the chart."""
    settings = settings_of(summary)
    lines = [f"# {summary.name}" + (f": {summary.paper.source}" if summary.paper else ""), "",
             f"Sweep `{sweep_dir}`: {_count(len({e.job for e in sweep.own}), 'finished job')}; swept "
             f"{', '.join(f'`{k}`' for k in summary.keys) or 'nothing'}.", ""]
    borrowed = [e for e in sweep.entries if e.borrowed]
    if borrowed:
        arms = ", ".join(dict.fromkeys(arm_label(e, summary.keys) for e in borrowed))
        lines += [f"Shared baseline: {_count(len({e.job for e in borrowed}), 'job')} borrowed from "
                  + ", ".join(f"`{d}`" for d in sweep.baseline_dirs) + f" (arm {arms}); their configs equal "
                  "this sweep's but for the swept keys, so they pair with its jobs by seed."
                  + (f" {_count(len(sweep.not_borrowed), 'other job')} there did not fit (first: "
                     f"`{sweep.not_borrowed[0][0]}`, {sweep.not_borrowed[0][1]})." if sweep.not_borrowed else ""), ""]
    lines += ["Command (rebuilt from the jobs' overrides):", "", "```bash", summary.command, "```", ""]
    lines += [f"- skipped `{job}`: {reason}" for job, reason in sweep.skipped]
    lines += ["", "Trained model (EMA), mean [95 % interval]; intervals: "
              + "; ".join(sorted({a.interval for a in summary.arms})) + ".", ""]
    header = ["arm", "seeds"] + [f"{s} {NAMES[m]}" for s in settings for m in METRICS] + ["parameters",
                                                                                        "train s/step"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for arm in summary.arms:
        chosen = " (paper's choice)" if summary.paper and arm.label == summary.paper.chosen else ""
        cells = [cell(arm.scores.get(s, {}).get(m), m) for s in settings for m in METRICS]
        cells += [f"{arm.parameters:,}" if arm.parameters is not None else "n/a", cell(arm.step_seconds, "seconds")]
        lines.append(f"| {arm.label}{chosen} | {','.join(map(str, arm.seeds))} | " + " | ".join(cells) + " |")
    lines += ["", "Train s/step: each job's training wall time ÷ its steps, as the jobs ran (machine load "
              "included: compare arms that ran side by side), mean [95 % interval over seeds]."]
    lines += verdict_table(summary)
    return "\n".join(lines + ["", f"![{summary.name}]({chart})", ""])


def verdict_table(summary: Summary) -> list[str]:
    if not summary.paper:
        return ["", "No paper table for this sweep (an `experiment=ablate_*` sweeping its own key has one)."]
    lines = ["", f"## Direction against the paper ({summary.paper.source})", "",
             f"PSNR of the paper's choice `{summary.paper.chosen}` minus the other arm: ours paired by seed "
             "(mean of the per-seed differences, 95 % Student-t interval over seeds), the paper's per "
             "dataset. Verdict: same direction / opposite when our interval excludes 0, else inconclusive "
             "(with one seed: when the two arms' own intervals do not overlap).", "",
             "| comparison | setting (paper) | ours | paper | verdict |", "|---|---|---|---|---|"]
    for v in summary.verdicts:
        paper_setting = PAPER_SETTING.get(v.setting, v.setting)
        ours = f"{v.ours:+.2f}" + (f" [{v.ours_ci[0]:+.2f}, {v.ours_ci[1]:+.2f}]" if v.ours_ci else "")
        lines.append(f"| {summary.paper.chosen} vs {v.arm} | {v.setting} ({paper_setting}) | {ours} | "
                     f"{v.paper} | {v.verdict} |")
    lines += ["", "Paper rows: " + "; ".join(f"`{k}` = {a.row}" for k, a in summary.paper.arms.items()) + "."]
    lines += [f"Note: {n}." for n in summary.paper.notes]
    return lines


def bar_chart(summary: Summary, path: Path) -> None:
    """One panel per (metric, eval setting): a bar per arm with its 95 % interval."""
    settings = settings_of(summary)
    fig, axes = plt.subplots(len(METRICS), len(settings), figsize=(max(3.2 * len(settings) + 1, 7.0), 5.5), dpi=110,
                             squeeze=False)
    labels = [a.label for a in summary.arms]
    chosen = summary.paper.chosen if summary.paper else None
    colours = ["tab:red" if label == chosen else "tab:blue" for label in labels]
    for row, metric in enumerate(METRICS):
        for col, setting in enumerate(settings):
            ax = axes[row][col]
            scores = [a.scores.get(setting, {}).get(metric) for a in summary.arms]
            means = [s.mean if s else 0.0 for s in scores]
            errors = [[s.mean - s.lo if s else 0.0 for s in scores], [s.hi - s.mean if s else 0.0 for s in scores]]
            ax.bar(range(len(labels)), means, yerr=errors, color=colours, capsize=4)
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
            ax.set_title(f"{setting} {NAMES[metric]}", fontsize=9)
            finite = [s for s in scores if s]
            if finite:
                low, high = min(s.lo for s in finite), max(s.hi for s in finite)
                pad = 0.15 * (high - low) + 1e-6
                ax.set_ylim(low - pad, high + pad)
    fig.suptitle(f"{summary.name}: trained model, mean and 95 % interval"
                 + (" (red: paper's choice)" if chosen else ""), fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png"))
    plt.close(fig)
