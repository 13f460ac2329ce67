"""What the command line prints: start-up noise off unless --verbose, and where the outputs went.

  console.setup(verbose=False)      # before a program runs
  print(console.outputs(workdir))   # after it: results.json, TensorBoard logs, tuned/

Quiet (the default): TensorFlow's C++ start-up messages are dropped (oneDNN / CPU-feature / CUDA
notices written to the process's stderr while TensorFlow is first imported, and later ones below
TF_CPP_MIN_LOG_LEVEL=2), and INFO records of other libraries (orbax's per-checkpoint lines, clu's
metric lines, jax's backend probing) are filtered out. Warnings and errors of every library, and
prompt_jax's own INFO lines (eval results, resume, preparation), still print.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # prompt_jax/


class _OwnInfoOnly(logging.Filter):
  """Passes WARNING and above, and records logged from prompt_jax's own files."""

  def filter(self, record: logging.LogRecord) -> bool:
    return (record.levelno >= logging.WARNING
            or os.path.abspath(record.pathname).startswith(PACKAGE_DIR))


@contextlib.contextmanager
def stderr_fd_silenced():
  """Points file descriptor 2 at /dev/null (C++ libraries write there directly, bypassing
  sys.stderr), restoring it afterwards."""
  sys.stderr.flush()
  saved = os.dup(2)
  devnull = os.open(os.devnull, os.O_WRONLY)
  try:
    os.dup2(devnull, 2)
    yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)


def setup(verbose: bool = False) -> None:
  """Quiet console (default) or everything every library logs (`verbose`)."""
  from absl import logging as absl_logging
  handler = absl_logging.get_absl_handler()
  for f in [f for f in handler.filters if isinstance(f, _OwnInfoOnly)]:
    handler.removeFilter(f)
  if verbose:
    return
  handler.addFilter(_OwnInfoOnly())
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  if 'tensorflow' not in sys.modules:
    with stderr_fd_silenced():
      try:
        import tensorflow  # noqa: F401  (first import: its C++ start-up messages)
      except ImportError:
        pass


def _find(workdir: str, name: str, *, directory: bool = False) -> list[str]:
  out = []
  for root, dirs, files in os.walk(workdir):
    if directory and name in dirs:
      out.append(os.path.join(root, name))
    if not directory and name in files:
      out.append(os.path.join(root, name))
    dirs[:] = [d for d in dirs if d not in ('checkpoints', 'tuned')]
  return sorted(out)


def _event_dirs(workdir: str) -> list[str]:
  out = set()
  for root, dirs, files in os.walk(workdir):
    if any(f.startswith('events.out.tfevents') for f in files):
      out.add(root)
    dirs[:] = [d for d in dirs if d not in ('checkpoints', 'tuned')]
  return sorted(out)


def outputs(workdir: str) -> str:
  """A block naming where a finished run's outputs are (paths under `workdir`)."""
  workdir = os.path.abspath(workdir)
  results = [p for n in ('results.json', 'b2n.json', 'zeroshot.json', 'demo_results.json')
             for p in _find(workdir, n)]
  events = _event_dirs(workdir)
  tuned = _find(workdir, 'tuned', directory=True)
  lines = [f'Outputs in {workdir}:']
  lines += [f'  results      {p}' for p in results] or ['  results      (none written)']
  if events:
    lines.append(f'  TensorBoard  tensorboard --logdir={workdir}   '
                 f'({len(events)} run{"s" * (len(events) > 1)})')
  lines += [f'  tuned/       {p}   (prompt_jax.load_tuned(backbone, path))' for p in tuned]
  return '\n'.join(lines)
