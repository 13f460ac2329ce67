r"""prompt-jax (= python -m prompt_jax.main): train, evaluate and export one config.

  prompt-jax --config=configs/demo.py --workdir=/tmp/demo          # offline demo, ~1 minute
  prompt-jax --config=configs/ship_vtab.py:task=cifar100 --workdir=/tmp/run \
      --config.init.checkpoint=/data/ViT-B_16.npz
  prompt-jax --config=configs/ship_vtab.py:task=cifar100 --show_config   # list the fields, exit

`--config.a.b=v` overrides a field; configs are locked, so an unknown key is an error
(`--show_config` prints every field of a config with its value). The config path is looked up
from the working directory, then among the installed package's configs (PACKAGED below).
`config.program` picks what runs (PROGRAMS below); the default trains and evaluates one method.
Every config value, and the files it names (backbone weights, the dataset under data.data_dir:
prompt_jax/train/preflight.py), is checked before TensorFlow is imported. Exit codes: 0 done; 2 a
config mistake found at start-up (a file or override that does not parse, an unknown key, a bad
value, a missing file: one message naming the fix); 1 another error (a workdir, checkpoint or a
non-finite step is a message naming the fix, no traceback);
128 + n when signal n (SIGTERM 143, SIGINT 130) stopped training after saving a checkpoint: rerun
the same command to resume.
`--verbose` shows every library's INFO log (orbax, clu, jax, TensorFlow) and the config.
`--config.program=evaluate` scores data.eval_splits from an export (config.evaluate.tuned, else
WORKDIR/tuned) into evaluate.json.

Other commands (each has --help): prompt-jax-sweep (the protocol: tasks x seeds x search, one
table), prompt-jax-report (the table and figure from results.json files), prompt-jax-predict (a
split or image files from an export), prompt-jax-torch-export (tuned prompts as a PyTorch state
dict); also python -m prompt_jax.<sweep|report|predict|torch_export>.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from absl import app
from absl import flags
from absl import logging
import ml_collections
from ml_collections import config_flags

from prompt_jax import checkpoints
from prompt_jax.protocol import programs
from prompt_jax.train import errors
from prompt_jax.train import preflight
from prompt_jax.train import validation
from prompt_jax.train import workdir
from prompt_jax.util import config_files
from prompt_jax.util import console
from prompt_jax.util import cpu_malloc

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Path to a config file.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where checkpoints, summaries and results go.')
_SHOW_CONFIG = flags.DEFINE_bool('show_config', False,
                                 'Print the config (every field, overrides applied) and exit.')
_VERBOSE = flags.DEFINE_bool('verbose', False,
                             'Show every library\'s INFO log (orbax, clu, jax, TensorFlow).')
flags.mark_flags_as_required(['config'])
HELP_FLAGS = ('-h', '-?', '--help', '--helpshort', '--helpfull')


# config.program -> what runs (prompt_jax/protocol/programs.py).
PROGRAMS = programs.PROGRAMS


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  config = _CONFIG.value
  if _SHOW_CONFIG.value:
    print(config)
    print('# override a field with --config.FIELD=VALUE, e.g. --config.train.lr=0.1')
    return
  if not _WORKDIR.value:
    raise app.UsageError('--workdir is required (where checkpoints, summaries and results go)')
  try:  # first: before JAX's backend exists (util/cpu_malloc.py), a bad value at once
    cpu_malloc.maybe_apply()
  except ValueError as e:
    _exit_config_error(str(e))
  try:  # every value and the files it names, before TensorFlow is imported
    preflight.check(config, _WORKDIR.value,
                    rules=(programs.problems, programs.schedule_problems))
  except validation.ConfigError as e:
    _exit_config_error(str(e))
  for warning in validation.warnings(config):
    print(f'warning: {warning}', file=sys.stderr)
  console.setup(_VERBOSE.value)  # before TensorFlow / orbax are first imported
  if _VERBOSE.value:
    logging.info('config:\n%s', config)
  result = run_program(config, _WORKDIR.value)
  if isinstance(result, dict):
    print(json.dumps({k: v for k, v in result.items() if k != 'history'}, indent=1, default=str))
  print(console.outputs(_WORKDIR.value))


def run_program(config: ml_collections.ConfigDict, workdir_path: str) -> Any:
  """Runs `config.program`; a known failure exits with one message naming the fix: 2 for an
  input found wrong once loaded (config against the data, workdir of another run or backbone,
  checkpoint, a damaged export or prompt file), 1 for a run that failed (non-finite step, no
  checkpoint restores, out of memory); a signal exits 128 + n."""
  try:
    return programs.get(config)(config, workdir_path)
  except (validation.ConfigError, workdir.WorkdirError, checkpoints.CheckpointError,
          errors.ExportError, errors.BackboneMismatchError, errors.PromptFileError) as e:
    _exit_config_error(str(e))
  except (errors.NonFiniteError, errors.RestoreError) as e:
    sys.exit(f'error: {e}')
  except errors.Interrupted as e:
    print(e, file=sys.stderr)
    sys.exit(128 + e.signum)
  except Exception as e:  # only out-of-memory is turned into a message
    if not (isinstance(e, MemoryError) or 'RESOURCE_EXHAUSTED' in str(e)):
      raise
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    sys.exit(f'error: out of memory ({first}) at train.batch_size={config.train.batch_size}, '
             f'eval_batch_size={config.train.eval_batch_size}, model.variant='
             f'{config.model.variant}: lower --config.train.batch_size (or eval_batch_size), set '
             '--config.model.remat=True, or run on more devices (the batch is sharded over them); '
             'checkpoints already saved are kept and a rerun resumes from the newest')


def _exit_config_error(message: str) -> None:
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's parse; a config file or override that does not parse is one line, exit code 2."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    if not any(a.startswith('--config') for a in argv[1:]) or 'config' not in str(e):
      raise
    _exit_config_error(preflight.flag_error(e, argv))
  except (AttributeError, KeyError, ValueError, TypeError, SyntaxError) as e:
    _exit_config_error(preflight.flag_error(e, argv))


def usage() -> str:
  """--help: this module's docstring, the packaged configs and the flags."""
  own = flags.FLAGS.module_help(sys.modules[__name__]) or flags.FLAGS.main_module_help()
  return (f'{__doc__}\nPACKAGED configs (--config=NAME[:key=value,...]):\n  '
          + '\n  '.join(config_files.available())
          + f'\n\nPROGRAMS (config.program): {", ".join(PROGRAMS)} (b2n and clip_zeroshot: '
          f'open-vocabulary methods)\n\nFlags:\n{own}\n'
          '  --config.FIELD=VALUE: override one field (see --show_config)\n'
          '  --helpfull: every flag, absl\'s included\n')


def run() -> None:
  """Console entry point (`prompt-jax`): resolves `--config=configs/x.py` against the installed
  package when it is not found from the working directory, then runs `main`."""
  if '--helpfull' in sys.argv[1:]:
    print(flags.FLAGS.get_help())
    sys.exit(0)
  if any(a in HELP_FLAGS for a in sys.argv[1:]):
    print(usage())
    sys.exit(0)
  try:
    sys.argv = config_files.resolve_argv(sys.argv)
  except FileNotFoundError as e:
    _exit_config_error(str(e))
  app.run(main, flags_parser=_parse_flags)


if __name__ == '__main__':
  run()
