"""``python -m jaxyolo.train --config experiments/digits.py [--config.epochs=10 ...] [--workdir DIR]``.

Configs are ml_collections ``get_config()`` files whose keys are jaxyolo/Ultralytics argument names
(``jaxyolo/cfg/default.yaml``). Rerunning with the same ``--workdir`` resumes exactly where the run stopped.
Multi-host: on TPU pods and SLURM/MPI GPU clusters ``jax.distributed`` starts by itself; elsewhere pass
``--coordinator_address host:port --num_processes N --process_id I`` on every process.
``--config.KEY=VALUE`` may set any jaxyolo argument, also ones the config file does not mention.
"""

from __future__ import annotations

import sys

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "ml_collections config file (get_config()).", lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory (default runs/classify/train, train-2, ...). Reused = resume.")
flags.DEFINE_string("coordinator_address", None, "jax.distributed coordinator host:port (multi-process runs).")
flags.DEFINE_integer("num_processes", None, "Number of processes (with --coordinator_address).")
flags.DEFINE_integer("process_id", None, "This process's index (with --coordinator_address).")


_OVERRIDES: dict = {}


def split_overrides(argv: list[str]) -> tuple[list[str], dict]:
    """Take ``--config.KEY=VALUE`` out of argv (absl would only accept keys the config file defines)."""
    from jaxyolo.cfg import check_keys, smart_value

    rest, overrides = [], {}
    for a in argv:
        if a.startswith("--config.") and "=" in a:
            key, value = a[len("--config."):].split("=", 1)
            overrides[key] = smart_value(value)
        else:
            rest.append(a)
    check_keys(overrides, "--config.KEY=VALUE")
    return rest, overrides


def main(argv) -> None:
    del argv
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax/TF chatter; jaxyolo logs through the 'jaxyolo' logger
    from jaxyolo import parallel
    from jaxyolo.cfg import ConfigKeyError
    from jaxyolo.cli import skip_final_gc
    from jaxyolo.engine.train import TrainingError, train

    if FLAGS.config is None:
        sys.exit("jaxyolo.train: --config is required, e.g. --config experiments/digits.py")
    parallel.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    overrides = {k: (tuple(v) if isinstance(v, list) else v) for k, v in FLAGS.config.to_dict().items()}
    overrides.update(_OVERRIDES)
    try:
        train(overrides, save_dir=FLAGS.workdir)
    except (ConfigKeyError, TrainingError, ValueError, FileNotFoundError) as e:
        sys.exit(f"jaxyolo.train: {e}")
    skip_final_gc()


def run() -> None:
    from jaxyolo.cfg import ConfigKeyError

    try:
        argv, overrides = split_overrides(sys.argv)
    except ConfigKeyError as e:
        sys.exit(f"jaxyolo.train: {e}")
    _OVERRIDES.update(overrides)
    sys.argv[:] = argv  # ml_collections reads config overrides from sys.argv itself
    app.run(main, argv=argv)


if __name__ == "__main__":
    run()
