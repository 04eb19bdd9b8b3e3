"""``python -m jaxyolo.train --config experiments/digits.py [--config.epochs=10 ...] [--workdir DIR]``.

Configs are ml_collections ``get_config()`` files whose keys are jaxyolo/Ultralytics argument names
(``jaxyolo/cfg/default.yaml``). Rerunning with the same ``--workdir`` resumes exactly where the run stopped.
Multi-host: on TPU pods and SLURM/MPI GPU clusters ``jax.distributed`` starts by itself; elsewhere pass
``--coordinator_address host:port --num_processes N --process_id I`` on every process.
"""

from __future__ import annotations

import sys

from absl import app, flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "ml_collections config file (get_config()).", lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory (default runs/classify/train, train-2, ...). Reused = resume.")
flags.DEFINE_string("coordinator_address", None, "jax.distributed coordinator host:port (multi-process runs).")
flags.DEFINE_integer("num_processes", None, "Number of processes (with --coordinator_address).")
flags.DEFINE_integer("process_id", None, "This process's index (with --coordinator_address).")


def main(argv) -> None:
    del argv
    from jaxyolo import parallel
    from jaxyolo.cfg import ConfigKeyError
    from jaxyolo.engine.train import TrainingError, train

    if FLAGS.config is None:
        sys.exit("jaxyolo.train: --config is required, e.g. --config experiments/digits.py")
    parallel.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    overrides = {k: (tuple(v) if isinstance(v, list) else v) for k, v in FLAGS.config.to_dict().items()}
    try:
        train(overrides, save_dir=FLAGS.workdir)
    except (ConfigKeyError, TrainingError, ValueError, FileNotFoundError) as e:
        sys.exit(f"jaxyolo.train: {e}")


if __name__ == "__main__":
    app.run(main)
