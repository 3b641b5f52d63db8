"""The seqrender application: `python experiments/run.py model=kaleido posenc=gta`.

Trains and evaluates on the embedded procedural scenes by default; every registry kind is a config
group (`posenc=rope`, `sampler=uniform`, ...). See experiments/configs/config.yaml for the knobs.
"""
import sys

import hydra
from omegaconf import DictConfig

from seqrender.experiments import cli, cluster


@hydra.main(config_path="configs", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    # SLURM's pre-timeout/preemption signal -> checkpoint, then requeue (seqrender.experiments.cluster)
    with cluster.preemptible() as stop_requested:
        return cli.task(cfg, stop_requested=stop_requested)


if __name__ == "__main__":
    trial = cli.before_compose(sys.argv[1:])
    cli.launch_locally(trial, sys.argv[1:], script=__file__)  # trainer.local_processes > 1: N ranks, then exit
    main()
