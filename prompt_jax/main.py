r"""Entry point.

  python -m prompt_jax.main --config=configs/ship_vtab.py --workdir=/tmp/run \
      --config.data.task=cifar100 --config.init.checkpoint=/data/ViT-B_16.npz

`--config.a.b=v` overrides a field; configs are locked, so an unknown key is an error. The config
path is looked up from the working directory, then among the installed package's configs.
`config.program` picks what runs (PROGRAMS below); the default trains and evaluates one method.
Every config value is checked before the program runs. Exit codes: 0 done; 1 an error (a bad
config, workdir, checkpoint or a non-finite step is a message naming the fix, no traceback);
128 + n when signal n (SIGTERM 143, SIGINT 130) stopped training after saving a checkpoint: rerun
the same command to resume.
"""

from __future__ import annotations

import json
import sys
from typing import Any
from collections.abc import Callable

from absl import app
from absl import flags
from absl import logging
import ml_collections
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Path to a config file.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where checkpoints, summaries and results go.')
flags.mark_flags_as_required(['config', 'workdir'])


def _train(config: ml_collections.ConfigDict, workdir: str) -> Any:
  from prompt_jax import train
  return train.train_and_evaluate(config, workdir)


def _demo(config: ml_collections.ConfigDict, workdir: str) -> Any:
  from prompt_jax import demo
  return demo.run(config, workdir)


def _b2n(config: ml_collections.ConfigDict, workdir: str) -> Any:
  from prompt_jax import b2n
  return b2n.run(config, workdir)


def _clip_zeroshot(config: ml_collections.ConfigDict, workdir: str) -> Any:
  from prompt_jax import b2n
  return b2n.zeroshot_run(config, workdir)


PROGRAMS: dict[str, Callable[[ml_collections.ConfigDict, str], Any]] = {
    'train': _train,            # train + evaluate one method (results.json, exported prompts)
    'demo': _demo,              # offline digits demo: pretrain, then linear / VPT shallow / deep
    'b2n': _b2n,                # CLIP base-to-novel: train on base classes, test base + novel + HM
    'clip_zeroshot': _clip_zeroshot,  # zero-shot CLIP on base and novel classes, no training
}


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  config = _CONFIG.value
  program = config.get('program', 'train')
  if program not in PROGRAMS:
    raise app.UsageError(f'unknown config.program {program!r}; known: {sorted(PROGRAMS)}')
  from prompt_jax import checkpointing
  from prompt_jax import checkpoints
  from prompt_jax import train
  from prompt_jax import validation
  from prompt_jax import workdir
  logging.info('config:\n%s', config)
  try:
    validation.check(config)
    result = PROGRAMS[program](config, _WORKDIR.value)
  except (validation.ConfigError, workdir.WorkdirError, checkpoints.CheckpointError,
          checkpointing.NonFiniteError, checkpointing.RestoreError) as e:
    sys.exit(f'error: {e}')
  except train.Interrupted as e:
    print(e, file=sys.stderr)
    sys.exit(128 + e.signum)
  if isinstance(result, dict):
    print(json.dumps({k: v for k, v in result.items() if k != 'history'}, indent=1, default=str))


def run() -> None:
  """Console entry point (`prompt-jax`): resolves `--config=configs/x.py` against the installed
  package when it is not found from the working directory, then runs `main`."""
  from prompt_jax import config_files
  try:
    sys.argv = config_files.resolve_argv(sys.argv)
  except FileNotFoundError as e:
    sys.exit(f'error: {e}')
  app.run(main)


if __name__ == '__main__':
  run()
