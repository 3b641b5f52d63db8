"""Render novel views from a trained Kaleido checkpoint along a camera trajectory:

    python experiments/render.py render.checkpoint=outputs/<date>/<time> render.scene=heldout:0 \
        render.references=3 render.trajectory=orbit render.views=16

Scenes: `heldout:<i>` (embedded), a Blender scene folder, or a folder of photos (cameras by
structure-from-motion). See experiments/configs/render.yaml and README "Render".
"""
import os
import sys

import hydra
from omegaconf import DictConfig

from seqrender.experiments import cli
from seqrender.experiments.config import ConfigError
from seqrender.experiments.render import RenderError


@hydra.main(config_path="configs", config_name="render", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    from seqrender.experiments.render.command import run_render

    try:
        return run_render(cfg, run_dir=cli.run_dir())
    except ConfigError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        cli.fail(f"config error: {err}")
    except RenderError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        cli.fail(f"error: {err}")


if __name__ == "__main__":
    cli.before_compose(sys.argv[1:], config_name="render")
    main()
