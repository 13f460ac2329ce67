"""Trainer guarantees: only the trainable subtree changes, resume is exact (also after SIGTERM and
past a corrupt checkpoint), a non-finite step stops cleanly and is never saved, sharded runs match
one device, exports reload for inference only on their own backbone."""

import glob
import json
import os
import signal
import subprocess
import sys

from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import micro_config
from prompt_jax.train import checkpointing
from prompt_jax.export import tuned as export
from prompt_jax.train import optim
from prompt_jax.train import trainer as train
from prompt_jax.train import workdir
from prompt_jax.data import registry as data_registry
from prompt_jax.data.source import ArraySource

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _final_state(workdir, like=None):
  """The last checkpointed train state; `like` (a state) gives the target shardings."""
  return checkpointing.restore_state(workdir, like)


def test_only_prompts_and_head_train_and_backbone_is_bit_identical(tmp_path, pretrained_npz):
  cfg = micro_config('vpt', epochs=1, export=True)
  cfg.unlock()
  cfg.init.checkpoint = pretrained_npz
  res = train.train_and_evaluate(cfg, str(tmp_path))
  # VPT-deep on Mu/8: 4 layers x 8 prompts x 64 + head 64x5 + 5.
  assert res['trainable_params'] == 4 * 8 * 64 + 64 * 5 + 5
  state = _final_state(str(tmp_path))
  assert sorted(traverse_util.flatten_dict(state['trainable'], sep='/')) == [
      'head/bias', 'head/kernel', 'prompt/prompts']
  model, params, _ = export.load_tuned(pretrained_npz, str(tmp_path / 'tuned'))
  flat = traverse_util.flatten_dict(params, sep='/')
  original = np.load(pretrained_npz)
  backbone = [k for k in original.files if not k.startswith('head/')]
  assert backbone and all(np.array_equal(flat[k], original[k]) for k in backbone)
  # The exported prompts reproduce the trainer's test accuracy.
  source = data_registry.get_source(cfg.data)
  correct = n = 0
  apply = jax.jit(lambda p, x: model.apply({'params': p}, x)[0])
  for batch in source.iterate('test', 256):
    pred = np.asarray(apply(params, batch['image'])).argmax(-1)
    correct += int(((pred == batch['label']) & batch['mask']).sum())
    n += int(batch['mask'].sum())
  assert correct / n == pytest.approx(res['test'], abs=1e-6)
  assert not glob.glob(str(tmp_path / 'tuned' / '*.pkl'))  # nothing that runs code on load
  # The same shapes but other weights: the prompts were not tuned on them.
  other = str(tmp_path / 'other.npz')
  np.savez(other, **{k: original[k] * (1.001 if k.endswith('kernel') else 1.0)
                     for k in original.files})
  with pytest.raises(export.BackboneMismatchError, match='allow_other_backbone=True'):
    export.load_tuned(other, str(tmp_path / 'tuned'))
  _, other_params, _ = export.load_tuned(other, str(tmp_path / 'tuned'), allow_other_backbone=True)
  assert not np.array_equal(traverse_util.flatten_dict(other_params, sep='/')['embedding/kernel'],
                            flat['embedding/kernel'])


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(tmp_path, monkeypatch):
  # 10 steps per epoch, a checkpoint every 5: step 10 is both a checkpoint step and an eval epoch
  # (VTAB defaults: steps 400 and 800). The run is killed during that evaluation,
  # which a checkpoint of step 10 written before it would lose on resume.
  cfg = micro_config('vpt', epochs=2, checkpoint_every_steps=5)
  full = train.train_and_evaluate(cfg, str(tmp_path / 'a'))

  real_evaluate = train.evaluate

  def dying_evaluate(*args, **kw):
    raise KeyboardInterrupt('simulated kill during the epoch-1 evaluation')

  monkeypatch.setattr(train, 'evaluate', dying_evaluate)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(cfg, str(tmp_path / 'b'))
  monkeypatch.setattr(train, 'evaluate', real_evaluate)
  resumed = train.train_and_evaluate(cfg, str(tmp_path / 'b'))
  assert full['started_from_step'] == 0
  assert resumed['started_from_step'] == 5  # restored, not recomputed from scratch
  assert resumed['steps'] == full['steps']
  a, b = _final_state(str(tmp_path / 'a')), _final_state(str(tmp_path / 'b'))
  jax.tree_util.tree_map(np.testing.assert_array_equal, a['trainable'], b['trainable'])
  assert resumed['test'] == full['test'] and resumed['history'] == full['history']
  with open(tmp_path / 'b' / 'results.json') as f:
    strict = json.loads(f.read(), parse_constant=lambda c: pytest.fail(f'non-strict JSON {c}'))
  assert [h['epoch'] for h in strict['history']] == [1, 2]
  assert strict['started_from_step'] == 5 and np.isfinite(strict['last_train_loss'])


@pytest.mark.parametrize('drop_last,steps', [(False, 10), (True, 9)])
def test_last_partial_batch_trains_unless_drop_last(tmp_path, monkeypatch, drop_last, steps):
  # digits train800: 300 images at batch 32 = 9 full batches + 12 images. drop_last=False (VPT)
  # trains them in a 10th batch padded to 32 rows (mask False on the padding).
  seen = []
  real_put = train.shard_lib.put_batch

  def record(batch, sharding):
    seen.append(int(batch['mask'].sum()))
    return real_put(batch, sharding)

  monkeypatch.setattr(train.shard_lib, 'put_batch', record)
  cfg = micro_config('vpt', epochs=1, eval_every_epochs=5, drop_last=drop_last)
  res = train.train_and_evaluate(cfg, str(tmp_path))
  assert res['steps'] == steps
  train_rows = seen[:steps]  # then the evaluation batches
  assert train_rows == [32] * 9 + ([12] if not drop_last else [])


def test_class_balanced_sampler_needs_drop_last():
  cfg = micro_config('davpt')
  cfg.unlock()
  cfg.data.sampler = 'class_balanced'
  with pytest.raises(ValueError, match='drop_last=True'):
    train.validation.check(cfg)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(64, 32, 32, 3)).astype(np.float32)
  y = rng.integers(0, 5, 64).astype(np.int32)

  class PoisonedSource(ArraySource):
    """Epoch 1's first batch (global step 3 with 2 steps per epoch) holds a NaN image."""

    def iterate(self, split, batch_size, **kw):
      for i, batch in enumerate(super().iterate(split, batch_size, **kw)):
        if split == 'train800' and kw.get('shuffle_seed') == 1 and i == 0:
          batch['image'] = batch['image'].copy()
          batch['image'][0] = np.nan
        yield batch

  src = PoisonedSource({'train800': (x, y), 'val200': (x, y), 'test': (x, y)}, num_classes=5)
  monkeypatch.setattr(data_registry, 'get_source', lambda cfg: src)
  cfg = micro_config('vpt', epochs=3, checkpoint_every_steps=1)
  with pytest.raises(train.NonFiniteError, match='step 3 .*loss is nan.*checkpoint, step 1, is '
                     'kept'):
    train.train_and_evaluate(cfg, str(tmp_path))
  state = _final_state(str(tmp_path))
  assert int(state['step']) == 1  # step 2's parameters gave the NaN loss: set aside
  assert all(np.isfinite(l).all() for l in jax.tree_util.tree_leaves(state['trainable']))
  # The same rerun would reach step 3 again: refused at once instead of looping.
  with pytest.raises(workdir.WorkdirError, match='step 3 was non-finite under this same config'):
    train.train_and_evaluate(cfg, str(tmp_path))


def test_parameters_whose_next_loss_is_nonfinite_are_no_fallback(tmp_path, monkeypatch):
  # lr 1e30 writes finite but huge parameters; the next forward's loss is not
  # finite. The step saved with those parameters must not be kept as the run's fallback.
  rng = np.random.default_rng(0)
  x = rng.normal(size=(64, 32, 32, 3)).astype(np.float32)
  y = rng.integers(0, 5, 64).astype(np.int32)
  src = ArraySource({'train800': (x, y), 'val200': (x, y), 'test': (x, y)}, num_classes=5)
  monkeypatch.setattr(data_registry, 'get_source', lambda cfg: src)
  cfg = micro_config('vpt', epochs=4, checkpoint_every_steps=1, keep_checkpoints=10, lr=1e30,
                     warmup_epochs=0)
  with pytest.raises(train.NonFiniteError, match='loss is (nan|inf)') as e:
    train.train_and_evaluate(cfg, str(tmp_path))
  bad = workdir.read_run(str(tmp_path))['nonfinite']['step']
  assert bad >= 2 and f'step {bad - 1}, whose parameters give that loss, is no fallback' in str(
      e.value)
  mngr = checkpointing.manager(str(tmp_path), 10)
  assert mngr.all_steps() == list(range(1, bad - 1))  # bad - 1 and later: none kept
  mngr.close()
  assert os.listdir(tmp_path / 'checkpoints_skipped') == [str(bad - 1)]
  assert workdir.read_run(str(tmp_path))['nonfinite']['checkpoint'] == (bad - 2 or None)


def _poisoned_schedule(bad_update: int):
  """optim.make_schedule whose lr is inf for the `bad_update`-th update (1-based): the loss of that
  step is finite (computed before the update) but the parameters it writes are not."""
  real = optim.make_schedule

  def make(cfg, steps_per_epoch):
    schedule = real(cfg, steps_per_epoch)
    return lambda count: jnp.where(count + 1 == bad_update, jnp.inf, schedule(count))

  return make


@pytest.mark.slow
def test_a_poisoned_update_is_never_saved_and_a_changed_rerun_resumes(tmp_path, monkeypatch):
  cfg = micro_config('vpt', epochs=1, checkpoint_every_steps=2, log_every_steps=4, max_steps=6)
  wd = str(tmp_path)
  monkeypatch.setattr(optim, 'make_schedule', _poisoned_schedule(3))
  with pytest.raises(train.NonFiniteError) as e:
    train.train_and_evaluate(cfg, wd)
  msg = str(e.value)
  assert 'step 3 (epoch 0) is not finite: its loss' in msg and 'is finite, but its' in msg
  assert 'stopped at step 4' in msg and 'step 2, is kept' in msg and 'train.lr' in msg
  mngr = checkpointing.manager(wd, 2)
  assert mngr.all_steps() == [2]  # step 4 (after the bad update) was not saved
  mngr.close()
  run = workdir.read_run(wd)
  assert run['nonfinite']['step'] == 3 and run['nonfinite']['checkpoint'] == 2
  monkeypatch.undo()
  with pytest.raises(workdir.WorkdirError, match='non-finite'):
    train.train_and_evaluate(cfg, wd)
  lower = micro_config('vpt', epochs=1, checkpoint_every_steps=2, log_every_steps=4, max_steps=6,
                       lr=1.0)
  with pytest.raises(workdir.WorkdirError, match='train.lr: 2.0 \\(recorded\\) -> 1.0'):
    train.train_and_evaluate(lower, wd)
  lower.unlock()
  lower.train.allow_config_change = True
  res = train.train_and_evaluate(lower, wd)
  assert res['started_from_step'] == 2 and res['steps'] == 6 and np.isfinite(res['last_train_loss'])
  assert 'nonfinite' not in workdir.read_run(wd)


# orbax's event loop complains while the torn checkpoint's reader is collected; harmless.
@pytest.mark.slow
@pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')
def test_a_corrupt_latest_checkpoint_falls_back_to_the_previous_step(tmp_path, caplog):
  cfg = micro_config('vpt', epochs=1, checkpoint_every_steps=4, max_steps=8, keep_checkpoints=3)
  wd = str(tmp_path)
  first = train.train_and_evaluate(cfg, wd)
  reference = _final_state(wd)
  for path in glob.glob(str(tmp_path / 'checkpoints' / '8' / 'state' / '**' / 'd' / '*'),
                        recursive=True):
    with open(path, 'r+b') as f:  # a torn write: every data file cut short
      f.truncate(8)
  again = train.train_and_evaluate(cfg, wd)
  assert 'checkpoint step 8 in' in caplog.text and 'is skipped: it does not restore' in caplog.text
  assert again['started_from_step'] == 4 and again['steps'] == 8
  assert os.path.isdir(tmp_path / 'checkpoints_skipped' / '8')
  jax.tree_util.tree_map(np.testing.assert_array_equal, reference['trainable'],
                         _final_state(wd)['trainable'])
  assert again['test'] == first['test']


@pytest.mark.slow
def test_sigterm_saves_the_current_step_and_a_rerun_resumes_from_it(tmp_path, monkeypatch):
  cfg = micro_config('vpt', epochs=1, checkpoint_every_steps=100, max_steps=9)
  wd = str(tmp_path)
  calls = {'n': 0}
  real_put = train.shard_lib.put_batch

  def put_and_signal(batch, sharding):
    calls['n'] += 1
    if calls['n'] == 7:  # the signal arrives during step 7
      os.kill(os.getpid(), signal.SIGTERM)
    return real_put(batch, sharding)

  def unhandled(signum, frame):  # instead of killing pytest when the trainer ignores SIGTERM
    raise AssertionError('the trainer did not handle SIGTERM')

  monkeypatch.setattr(train.shard_lib, 'put_batch', put_and_signal)
  before = signal.signal(signal.SIGTERM, unhandled)
  try:
    with pytest.raises(train.Interrupted, match='SIGTERM: stopped after saving the checkpoint of '
                       'step 7') as e:
      train.train_and_evaluate(cfg, wd)
    assert signal.getsignal(signal.SIGTERM) is unhandled  # the trainer restored the handler
  finally:
    signal.signal(signal.SIGTERM, before)
  assert e.value.signum == signal.SIGTERM
  assert not os.path.exists(tmp_path / workdir.LOCK_FILE)  # lock released
  assert int(_final_state(wd)['step']) == 7
  monkeypatch.setattr(train.shard_lib, 'put_batch', real_put)
  res = train.train_and_evaluate(cfg, wd)
  assert res['started_from_step'] == 7 and res['steps'] == 9


def test_a_split_smaller_than_declared_is_an_error_not_a_hang(tmp_path, monkeypatch):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(64, 32, 32, 3)).astype(np.float32)
  y = rng.integers(0, 5, 64).astype(np.int32)

  class ShortSource(ArraySource):
    """Declares 64 training examples (2 batches) but yields one batch."""

    def iterate(self, split, batch_size, **kw):
      for i, batch in enumerate(super().iterate(split, batch_size, **kw)):
        if split == 'train800' and i == 1:
          return
        yield batch

  src = ShortSource({'train800': (x, y), 'val200': (x, y), 'test': (x, y)}, num_classes=5)
  monkeypatch.setattr(data_registry, 'get_source', lambda cfg: src)
  with pytest.raises(RuntimeError, match="'train800' ran out after 1 batches.*declared 64"):
    train.train_and_evaluate(micro_config('vpt', epochs=2), str(tmp_path))


def test_sharded_over_8_devices_matches_one_device(tmp_path):
  cfg = micro_config('vpt', epochs=1, max_steps=3)
  one = train.train_and_evaluate(cfg, str(tmp_path / 'one'))
  script = (
      'import sys, json; sys.path.insert(0, "tests"); import jax;'
      'assert jax.device_count() == 8, jax.devices();'
      'from helpers import micro_config; from prompt_jax.train import trainer as train;'
      'cfg = micro_config("vpt", epochs=1, max_steps=3); cfg.unlock();'
      'cfg.mesh.fsdp = int(sys.argv[2]);'
      'r = train.train_and_evaluate(cfg, sys.argv[1]);'
      'print(json.dumps([r["last_train_loss"], r["started_from_step"], r["test"]]))')
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8',
             JAX_PLATFORMS='cpu')
  for fsdp in (1, 2):
    wd = str(tmp_path / f'eight_{fsdp}')
    out = subprocess.run([sys.executable, '-c', script, wd, str(fsdp)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    loss8, _, test8 = json.loads(out.stdout.strip().splitlines()[-1])
    assert loss8 == pytest.approx(one['last_train_loss'], abs=1e-5)
    a = _final_state(str(tmp_path / 'one'))
    b = _final_state(wd, like=a)
    jax.tree_util.tree_map(lambda u, v: np.testing.assert_allclose(u, v, atol=1e-5),
                           a['trainable'], b['trainable'])
  # The 8-device state resumed on 1 device, and the 1-device state on 8 (each
  # restore checks the state digest, so a wrongly placed or reinterpreted array would fail).
  back = train.train_and_evaluate(cfg, str(tmp_path / 'eight_1'))
  assert back['started_from_step'] == 3 and back['test'] == test8
  out = subprocess.run([sys.executable, '-c', script, str(tmp_path / 'one'), '1'], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  _, start, test_on_8 = json.loads(out.stdout.strip().splitlines()[-1])
  assert start == 3 and test_on_8 == one['test']
