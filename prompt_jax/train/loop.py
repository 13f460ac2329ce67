"""The training loop: one `Loop` holds the state of a run between steps and its periodic actions.

  run = Run(cfg=cfg, workdir=workdir, recipe=recipe, ...)   # what stays fixed while training
  loop = Loop(run, state=state, frozen=frozen, meta=meta)
  loop.train()      # trains to total_steps, evaluates, checkpoints; loop.step, loop.meta['history']

Per step, in this order: the finite flags are read (log, checkpoint, epoch-end and stop steps
only), train scalars are written (log steps), the method's epoch hook and the due evaluation run
(epoch ends), then the checkpoint is saved: a saved step holds every evaluation up to it. The
last step's evaluation and checkpoint follow the loop. SIGTERM / SIGINT save the current step and
raise `Interrupted`; a non-finite step raises `NonFiniteError` (checkpointing.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from absl import logging
import jax
import ml_collections
import numpy as np

from prompt_jax.train import checkpointing
from prompt_jax.train import optim
from prompt_jax.train import sharding as shard_lib
from prompt_jax.train import workdir as workdir_lib
from prompt_jax.train.errors import Interrupted, NonFiniteError
from prompt_jax.train.inputs import InputPath
from prompt_jax.methods import base

Config = ml_collections.ConfigDict


@contextlib.contextmanager
def stop_on_signals() -> Iterator[dict[str, int]]:
  """While the block runs, SIGTERM / SIGINT are recorded in the yielded dict ({'signum': n})
  instead of stopping the process; a second one raises KeyboardInterrupt at once. Handlers can
  only be set from the main thread: elsewhere the signals keep their default behaviour."""
  got: dict[str, int] = {}
  if threading.current_thread() is not threading.main_thread():
    yield got
    return

  def handler(signum, frame):
    del frame
    if got:
      raise KeyboardInterrupt(f'second signal ({signal.Signals(signum).name})')
    got['signum'] = signum
    logging.warning('%s: saving a checkpoint after this step, then stopping (send it again to stop '
                    'at once)', signal.Signals(signum).name)

  old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
  try:
    yield got
  finally:
    for s, h in old.items():
      signal.signal(s, h)


def stop_requested(got: dict[str, int], at_log_step: bool) -> bool:
  """A stop signal arrived. Several processes agree on it at log steps only (one collective)."""
  if jax.process_count() == 1:
    return bool(got)
  if not at_log_step:
    return False
  from jax.experimental import multihost_utils
  return bool(np.max(multihost_utils.process_allgather(np.int32(bool(got)))))


def first_nonfinite(pending: list[tuple[int, dict[str, jax.Array]]]) -> tuple[int | None, float]:
  """(the first step whose metrics['finite'] is False, its loss), or (None, the last step's
  loss): one host read of the device-side flags of `pending` [(step, metrics)]."""
  got = jax.device_get([(m['finite'], m['loss']) for _, m in pending])
  for (step, _), (ok, loss) in zip(pending, got):
    if not ok:
      return step, float(loss)
  return None, float(got[-1][1])


def nonfinite_message(cfg: Config, workdir: str, bad: int, loss: float, stopped_at: int,
                      kept: int | None, steps_per_epoch: int) -> str:
  what = (f'its loss is {loss}' if not np.isfinite(loss) else
          f'its loss {loss:.4g} is finite, but its gradient or update made the parameters / '
          'optimizer state non-finite')
  dropped = ('' if np.isfinite(loss) else
             f' (step {bad - 1}, whose parameters give that loss, is no fallback: set aside to '
             f'{workdir}/checkpoints_skipped if it was saved)')
  saved = (f'The newest good checkpoint, step {kept}, is kept in {workdir}/checkpoints{dropped}'
           if kept is not None else f'No good checkpoint had been saved{dropped}')
  resume = f'resume from step {kept}' if kept is not None else 'start again'
  return (
      f'training step {bad} (epoch {(bad - 1) // steps_per_epoch}) is not finite: {what}; '
      f'stopped at step {stopped_at}. {saved}. Try a lower train.lr (peak lr now '
      f'{optim.peak_lr(cfg.train):g}), gradient clipping (--config.train.grad_clip_norm=1.0), '
      "--config.model.compute_dtype=float32, or check the inputs for NaN and "
      f'data.normalization. A rerun of this same config is refused (it would reach step {bad} '
      f'again): change the config and pass --config.{workdir_lib.OVERRIDE}=True to {resume}.')


@dataclasses.dataclass(frozen=True, kw_only=True)
class Run:
  """What stays fixed while a run trains: its config, where it writes, the method's recipe, the
  input path, the jitted steps, the checkpoint manager, the summary writer, the lr schedule and
  the counts."""

  cfg: Config
  workdir: str
  recipe: base.Recipe
  path: InputPath
  train_step: Callable[..., Any]  # (state, frozen, batch) -> (state, metrics)
  evaluate: Callable[[Any, str], dict[str, float]]  # (state, split) -> {'accuracy', 'loss'}
  mngr: Any  # orbax CheckpointManager
  writer: Any
  schedule: Callable[[int], Any]
  shardings: tuple[Any, Any]  # (replicated, batch)
  n_train: int  # the training split's declared size
  steps_per_epoch: int
  total_steps: int
  hooks: tuple[Callable[[int], Any], ...] = ()  # called with each step (progress, bars)


@dataclasses.dataclass
class Loop:
  """A run between steps: its state, counters, and the actions due after each step.

    loop = Loop(run, state=state, frozen=frozen, meta=meta, step=first_step)
  """

  run: Run
  state: dict[str, Any]
  frozen: Any
  meta: dict[str, Any]  # checkpointed with the state: {'history', 'last_train_loss'}
  step: int = 0
  last_loss: float | None = None
  pending: list[tuple[int, dict[str, jax.Array]]] = dataclasses.field(default_factory=list)
  seconds: float = 0.0  # training time of this run

  def verify(self) -> None:
    """Reads the finite flags of the steps since the last check; stops at the first bad one."""
    if not self.pending:
      return
    bad, loss = first_nonfinite(self.pending)
    self.pending.clear()
    if bad is None:
      self.last_loss = loss
      return
    # The parameters of step bad - 1 gave the non-finite loss: they are no fallback either.
    last_good = bad - 1 if np.isfinite(loss) else bad - 2
    kept = checkpointing.keep_up_to(self.run.mngr, last_good)
    if jax.process_index() == 0:
      workdir_lib.mark_nonfinite(self.run.workdir, {'step': bad, 'loss': repr(loss),
                                                'stopped_at': self.step, 'checkpoint': kept})
    raise NonFiniteError(nonfinite_message(self.run.cfg, self.run.workdir, bad, loss, self.step,
                                           kept, self.run.steps_per_epoch))

  def save(self) -> None:
    self.meta['last_train_loss'] = self.last_loss
    checkpointing.save(self.run.mngr, self.state, self.meta)

  def write_train_scalars(self, metrics: dict[str, jax.Array]) -> None:
    scalars = {k: float(v) for k, v in jax.device_get(metrics).items() if k != 'finite'}
    scalars['lr'] = float(self.run.schedule(self.step - 1))
    self.run.writer.write_scalars(self.step, {f'train/{k}': v for k, v in scalars.items()})

  def run_eval(self, epoch: int) -> None:
    row: dict[str, Any] = {'epoch': epoch, 'step': int(jax.device_get(self.state['step']))}
    for split in self.run.cfg.data.eval_splits:
      m = self.run.evaluate(self.state, split)
      row[split] = m['accuracy']
      self.run.writer.write_scalars(row['step'], {f'{split}/accuracy': m['accuracy'],
                                              f'{split}/loss': m['loss']})
    self.meta['history'].append(row)
    logging.info('eval %s', row)

  def end_epoch(self) -> bool:
    """The method's epoch hook, then the evaluation when one is due; True when it evaluated."""
    epoch_done = self.step // self.run.steps_per_epoch
    ms = jax.device_get(self.state['method_state'])
    new_ms = self.run.recipe.epoch_end(ms, epoch_done, self.run.cfg)
    if new_ms is not ms:
      self.state = dict(self.state, method_state=jax.device_put(new_ms, self.run.shardings[0]))
    if epoch_done % self.run.cfg.train.eval_every_epochs == 0 and self.step < self.run.total_steps:
      self.run_eval(epoch_done)
      return True
    return False

  def after_step(self, metrics: dict[str, jax.Array], signals: dict[str, int]) -> bool:
    """The actions due after `self.step`; True at the last step (the epoch loop ends)."""
    t = self.run.cfg.train
    self.pending.append((self.step, metrics))
    for hook in self.run.hooks:
      hook(self.step)
    log_now = self.step % t.log_every_steps == 0 or self.step == self.run.total_steps
    save_now = self.step % t.checkpoint_every_steps == 0
    epoch_now = self.step % self.run.steps_per_epoch == 0
    stop_now = stop_requested(signals, log_now)
    if log_now or save_now or stop_now or epoch_now:
      self.verify()
    if log_now:
      self.write_train_scalars(metrics)
    # The epoch's hook and evaluation come before its checkpoint, so that a saved step always
    # holds every evaluation up to it (a kill between the two loses none).
    evaluated = epoch_now and self.end_epoch()
    if self.step >= self.run.total_steps and not stop_now:
      return True  # the final evaluation, then its checkpoint, follow the loop
    if save_now or stop_now or evaluated:
      self.save()
    if stop_now:
      self.run.mngr.wait_until_finished()
      raise Interrupted(signals.get('signum', signal.SIGTERM), self.step, self.run.workdir)
    return False

  def run_epoch(self, signals: dict[str, int]) -> None:
    """The rest of the current epoch (or up to total_steps)."""
    epoch, skip = divmod(self.step, self.run.steps_per_epoch)
    bsh = self.run.shardings[1]
    for batch in self.run.path.train_batches(epoch, skip, self.run.steps_per_epoch):
      self.state, metrics = self.run.train_step(self.state, self.frozen,
                                            shard_lib.put_batch(batch, bsh))
      self.step += 1
      if self.after_step(metrics, signals):
        return
    if self.step < self.run.total_steps and self.step % self.run.steps_per_epoch:
      c, spe = self.run.cfg, self.run.steps_per_epoch
      raise RuntimeError(
          f'split {c.data.train_split!r} ran out after {self.step - epoch * spe} batches of '
          f'epoch {epoch}; the source declared {self.run.n_train} examples = {spe} batches of '
          f'{c.train.batch_size}. The dataset is smaller than its declared split size.')

  def train(self) -> None:
    """Trains to total_steps, then the final evaluation (unless done) and checkpoint."""
    t0 = time.time()
    try:
      with stop_on_signals() as signals:
        while self.step < self.run.total_steps:
          self.run_epoch(signals)
      self.verify()
      history = self.meta['history']
      if not history or history[-1]['step'] != self.step:
        self.run_eval(-(-self.step // self.run.steps_per_epoch))
      self.save()
      self.run.mngr.wait_until_finished()
    finally:
      self.run.mngr.close()
    self.seconds = time.time() - t0
