"""Progress bars (tqdm) for training epochs, evaluation and preparation steps.

  for batch in progress.bar(source.iterate(...), total=n, desc='features', unit='img'): ...
  bars = progress.EpochBars(total_steps, steps_per_epoch, batch_size, name='vpt_dmlab')
  bars(step)                                    # the training loop's hook, after each step

Bars go to stderr and show rate (img/s) and ETA. They are shown when stderr is a terminal or a
Jupyter/Colab kernel, and only on process 0; the environment variable PROMPT_JAX_PROGRESS=1 / 0
forces them on / off (e.g. on for a log file, off in a notebook).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable
from typing import Any

import tqdm

ENV = 'PROMPT_JAX_PROGRESS'


def enabled() -> bool:
  """Whether bars are drawn (see the module docstring)."""
  forced = os.environ.get(ENV, '')
  if forced:
    on = forced.lower() not in ('0', 'false', 'no', 'off')
  else:
    on = sys.stderr.isatty() or type(sys.stderr).__module__.startswith('ipykernel')
  if on and 'jax' in sys.modules:
    import jax
    on = jax.process_index() == 0
  return on


def bar(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = '',
        unit: str = 'img', leave: bool = True, **kw: Any) -> tqdm.tqdm:
  """A tqdm bar (a no-op one when `enabled()` is False)."""
  return tqdm.tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave,
                   disable=not enabled(), dynamic_ncols=True, **kw)


class EpochBars:
  """The training loop's progress hook: one bar per epoch counting images (img/s, ETA to the end
  of the epoch), titled 'NAME epoch e/E'. A bar is cleared when its epoch ends, so the eval line
  that follows starts on a clean line."""

  def __init__(self, total_steps: int, steps_per_epoch: int, batch_size: int, name: str = ''):
    self.total_steps = total_steps
    self.steps_per_epoch = steps_per_epoch
    self.batch_size = batch_size
    self.name = name
    self.epochs = math.ceil(total_steps / steps_per_epoch)
    self._bar: tqdm.tqdm | None = None
    self._epoch = -1

  def __call__(self, step: int) -> None:
    """After the training step that made the step count `step` (1-based)."""
    epoch, done = divmod(step - 1, self.steps_per_epoch)
    in_epoch = min(self.steps_per_epoch, self.total_steps - epoch * self.steps_per_epoch)
    if self._bar is None or epoch != self._epoch:
      self.close()
      self._epoch = epoch
      self._bar = bar(total=in_epoch * self.batch_size, initial=done * self.batch_size,
                      desc=f'{self.name} epoch {epoch + 1}/{self.epochs}'.strip(), leave=False)
    self._bar.update(self.batch_size)
    if done + 1 >= in_epoch:
      self.close()

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
      self._bar = None
