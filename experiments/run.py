"""The seqrender application: `python experiments/run.py model=kaleido posenc=gta`.

Trains and evaluates on the embedded procedural scenes by default; every registry kind is a config
group (`posenc=rope`, `sampler=uniform`, ...). See experiments/configs/config.yaml for the knobs.
"""
import os
import sys

# Idle OpenMP threads sleep instead of spinning: on a shared CPU spinning threads slowed training
# ~10x in our measurements; on an idle machine it costs little.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from seqrender.experiments import cli, cluster  # noqa: E402


@hydra.main(config_path="configs", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    # SLURM's pre-timeout/preemption signal -> checkpoint, then requeue (seqrender.experiments.cluster)
    with cluster.preemptible() as stop_requested:
        return cli.task(cfg, stop_requested=stop_requested)


if __name__ == "__main__":
    trial = cli.before_compose(sys.argv[1:])
    cli.launch_locally(trial, sys.argv[1:], script=__file__)  # trainer.local_processes > 1: N ranks, then exit
    main()
