"""What a run raises when it stops early, and what an export or prompt file that cannot be used
raises; light (no JAX), so the command line can name them before anything heavy is imported."""

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


class ExportError(ValueError):
  """An export directory that is incomplete or changed since it was written."""


class BackboneMismatchError(ValueError):
  """The backbone given to `load_tuned` is not the one the prompts were tuned on."""


class PromptFileError(ValueError):
  """A prompt state dict that cannot be used: not a safetensors file, or non-finite values."""
