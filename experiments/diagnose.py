"""Velocity error by noise level with true, shuffled and dropped references (seqrender.experiments.diagnose).

    python experiments/diagnose.py outputs/<date>/<time> [--setting 3->1] [--items 96] [--restart]

Reads the run's composed config (`.hydra/config.yaml`) and the EMA weights of its newest checkpoint,
prints a table and writes `diagnose.json` into the run directory. `--restart` also restarts the run's
sampler from the ground truth noised to t0 (SDEdit; PSNR / SSIM per t0) and writes `restart.png`:
row 0 the ground truth of each item's first target, then one row per t0. `--same-pose` samples
every target at its item's first reference's pose (PSNR / SSIM beside the true targets') and writes
`same_pose.png`: can the model carry a reference's content to a camera it already sees?
`--attention` splits the target tokens' temporal-attention mass per block into references / own
frame / other targets / registers, by noise level.
"""
import argparse
import json
import sys
from pathlib import Path

from omegaconf import OmegaConf
from safetensors.torch import load_model

from seqrender.experiments.checkpoint import latest_checkpoint
from seqrender.experiments.config import ConfigError, validate_config
from seqrender.experiments.configstore import prepare_registry
from seqrender.experiments.diagnose import (MODES, PARTS, SPREAD, attention_mass, error_by_t,
                                           restart_from_truth, same_pose_check)
from seqrender.experiments.job import load_split
from seqrender.experiments.report import write_image_grid
from seqrender.experiments.train import build_model

TS = [0.05, 0.15, 0.25, 0.35, 0.5, 0.65, 0.8, 0.9, 1.0]
RESTARTS = [0.15, 0.3, 0.5, 0.75, 1.0]  # moved to the nearest step of the run's schedule
RESTART_PICTURE_ITEMS = 12


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--setting", default="3->1")
    parser.add_argument("--items", type=int, default=96)
    parser.add_argument("--restart", action="store_true", help="also restart the sampler from noised ground truth")
    parser.add_argument("--same-pose", action="store_true", help="also sample every target at its first reference's pose")
    parser.add_argument("--attention", action="store_true", help="also split the targets' temporal attention by key")
    args = parser.parse_args()
    config_file = args.run_dir / ".hydra" / "config.yaml"
    ckpt = latest_checkpoint(args.run_dir / "checkpoints")
    if not config_file.is_file() or ckpt is None:
        print(f"error: {args.run_dir}: not a finished run directory (needs .hydra/config.yaml and a checkpoint)",
              file=sys.stderr)
        return 2
    prepare_registry()
    try:
        cfg = validate_config(OmegaConf.to_container(OmegaConf.load(config_file), resolve=True))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    model = build_model(cfg)
    load_model(model, str(ckpt / "ema.safetensors"))
    heldout = load_split(cfg, "heldout")                       # loaded once, shared by every check
    errors = error_by_t(model, heldout, args.setting, ts=TS, items=args.items,
                        seed=cfg.eval.seed)
    print(f"velocity MSE on {args.setting} targets ({args.items} held-out items, {ckpt.name}, EMA)")
    print("   t   " + "".join(f"{m:>10}" for m in MODES))
    for i, t in enumerate(TS):
        print(f"  {t:.2f} " + "".join(f"{errors[m][i]:10.4f}" for m in MODES))
    out = {"setting": args.setting, "items": args.items, "checkpoint": str(ckpt), "t": TS, "velocity_mse": errors}
    if args.restart:
        used, scores, images = restart_from_truth(model, cfg, heldout, args.setting,
                                                  starts=RESTARTS, items=args.items, seed=cfg.eval.seed)
        print(f"sampler restarted from the ground truth noised to t0 ({cfg.schedule.name}, "
              f"guidance {cfg.eval.guidance_scale}): PSNR / SSIM")
        for t0, psnr, ssim in zip(used, scores["psnr"], scores["ssim"]):
            print(f"  t0 {t0:.3f}  {psnr:6.2f} / {ssim:.3f}")
        out["restart"] = {"t0": used, **scores}
        rows = f"rows: ground truth, then restarted from t0 = {', '.join(f'{t:.2f}' for t in used)}"
        write_image_grid(args.run_dir / "restart.png", images[:, :RESTART_PICTURE_ITEMS], title=rows)
        print(f"wrote {args.run_dir / 'restart.png'} ({rows})")
    if args.same_pose:
        scores, images = same_pose_check(model, cfg, heldout, args.setting, items=args.items,
                                         seed=cfg.eval.seed)
        print("the run's sampler with every target at its first reference's pose (a copy would score inf / 1):")
        for name, s in scores.items():
            print(f"  {name:9s}  {s['psnr']:6.2f} / {s['ssim']:.3f}")
        out["same_pose"] = scores
        title = "rows: first reference, then the first target sampled at that reference's pose"
        write_image_grid(args.run_dir / "same_pose.png", images[:, :RESTART_PICTURE_ITEMS], title=title)
        print(f"wrote {args.run_dir / 'same_pose.png'} ({title})")
    if args.attention:
        try:
            masses = attention_mass(model, heldout, args.setting, ts=TS, items=args.items, seed=cfg.eval.seed)
        except ValueError as exc:
            print(f"error: --attention: {exc}", file=sys.stderr)
            return 2
        print("target tokens' temporal attention per block (true references): mass on "
              + " / ".join(PARTS) + f", {SPREAD}")
        for i, t in enumerate(TS):
            blocks = zip(*(masses[p][i] for p in (*PARTS, SPREAD)))
            print(f"  {t:.2f}  " + "   ".join("/".join(f"{m:.2f}" for m in block[:-1]) + f" {block[-1]:5.1f}"
                                          for block in blocks))
        out["attention_mass"] = {"parts": list(PARTS), **masses}
    (args.run_dir / "diagnose.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
