"""What a run raises when it stops early; light (no JAX), so the command line can name them before
anything heavy is imported."""

from __future__ import annotations

import signal


class NonFiniteError(FloatingPointError):
  """A training state with NaN / inf values; it is never saved."""


class RestoreError(RuntimeError):
  """The workdir has checkpoints but none of them restores."""


class Interrupted(Exception):
  """SIGTERM / SIGINT stopped training after the state of `step` was checkpointed."""

  def __init__(self, signum: int, step: int, workdir: str):
    self.signum, self.step = signum, step
    super().__init__(f'{signal.Signals(signum).name}: stopped after saving the checkpoint of step '
                     f'{step} in {workdir}; rerun the same command to resume from it')
