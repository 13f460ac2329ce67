"""The device input path (train/inputs.py): the training split lives on the devices and the
step gathers, augments and normalises; eval splits are decoded once per run; resume stays exact."""

import glob

import jax
import numpy as np
import pytest
import tensorflow as tf

from helpers import micro_config
from prompt_jax.train import checkpointing
from prompt_jax.train import trainer as train
from prompt_jax.data import pipeline
from prompt_jax.data import registry as data_registry

SPLITS = {'train800': 96, 'val200': 40, 'test': 72}


def _source(seed=0):
  """A TfSource over random uint8 32×32 images (decoded by tf.data like vtab / folder)."""
  rng = np.random.default_rng(seed)
  data = {k: (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
              rng.integers(0, 5, n).astype(np.int64)) for k, n in SPLITS.items()}

  def read(split):
    x, y = data[split]
    return tf.data.Dataset.from_tensor_slices({'image': x, 'label': y})

  opts = pipeline.ImageOptions(image_size=32, normalization='minus_one_to_one')
  return pipeline.TfSource(read, SPLITS, 5, opts)


def _cfg(method='vpt', **data):
  cfg = micro_config(method, epochs=3, checkpoint_every_steps=4)
  cfg.unlock()
  cfg.data.update(data)
  if method == 'davpt':
    from prompt_jax.configs import common
    cfg.davpt = common.davpt(num_proxies=3, num_other=2, proxy_start=3, proxy_end=3)
    cfg.train.drop_last = True
  cfg.lock()
  return cfg


def _trainable(workdir):
  return checkpointing.restore_state(workdir, None)['trainable']


def test_device_path_trains_as_the_host_path(tmp_path, monkeypatch):
  monkeypatch.setattr(data_registry, 'get_source', lambda cfg: _source())
  dev = train.train_and_evaluate(_cfg(), str(tmp_path / 'dev'))
  host = train.train_and_evaluate(_cfg(device_cache=False), str(tmp_path / 'host'))
  assert dev['steps'] == host['steps'] == 9
  assert dev['last_train_loss'] == pytest.approx(host['last_train_loss'], abs=1e-6)
  assert dev['history'] == host['history']
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
                         _trainable(str(tmp_path / 'dev')), _trainable(str(tmp_path / 'host')))


@pytest.mark.slow
def test_class_balanced_davpt_on_the_device_path_trains_as_the_host_path(tmp_path, monkeypatch):
  monkeypatch.setattr(data_registry, 'get_source', lambda cfg: _source())
  kw = dict(sampler='class_balanced', images_per_class=2)
  dev = train.train_and_evaluate(_cfg('davpt', **kw), str(tmp_path / 'dev'))
  host = train.train_and_evaluate(_cfg('davpt', device_cache=False, **kw), str(tmp_path / 'host'))
  assert dev['steps'] == host['steps'] == 9
  assert dev['last_train_loss'] == pytest.approx(host['last_train_loss'], abs=1e-5)
  assert [h['test'] for h in dev['history']] == [h['test'] for h in host['history']]


def test_eval_splits_and_the_train_split_are_decoded_once_per_run(tmp_path, monkeypatch):
  src = _source()
  monkeypatch.setattr(data_registry, 'get_source', lambda cfg: src)
  res = train.train_and_evaluate(_cfg(), str(tmp_path))
  assert [h['epoch'] for h in res['history']] == [1, 2, 3]  # three evaluations
  assert src.decodes == {'train800': 1, 'val200': 1, 'test': 1}


def test_a_large_eval_split_is_memmapped_in_the_workdir_with_the_same_result(tmp_path,
                                                                            monkeypatch):
  monkeypatch.setattr(data_registry, 'get_source', lambda cfg: _source())
  mem = train.train_and_evaluate(_cfg(cache_dtype='uint8'), str(tmp_path / 'mem'))
  disk = train.train_and_evaluate(_cfg(cache_dtype='uint8', cache_memory_gb=0.0),
                                  str(tmp_path / 'disk'))
  files = sorted(glob.glob(str(tmp_path / 'disk' / 'cache' / '*.npy')))
  assert len([f for f in files if not f.endswith('.labels.npy')]) == 2  # val200, test
  cached = np.load([f for f in files if '/test-' in f and 'labels' not in f][0], mmap_mode='r')
  assert cached.dtype == np.uint8 and cached.shape == (72, 32, 32, 3)
  assert mem['history'] == disk['history']


def test_augmented_device_run_resumes_bit_exactly(tmp_path, monkeypatch):
  monkeypatch.setattr(data_registry, 'get_source', lambda cfg: _source())
  cfg = _cfg(augment=True, cache_dtype='uint8')
  full = train.train_and_evaluate(cfg, str(tmp_path / 'a'))
  calls = {'n': 0}
  real_put = train.shard_lib.put_batch

  def dying_put(batch, sharding):
    if 'index' in batch:
      calls['n'] += 1
      if calls['n'] == 5:  # dies before step 5, after the mid-epoch step-4 checkpoint
        raise KeyboardInterrupt('simulated kill')
    return real_put(batch, sharding)

  monkeypatch.setattr(train.shard_lib, 'put_batch', dying_put)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(cfg, str(tmp_path / 'b'))
  monkeypatch.setattr(train.shard_lib, 'put_batch', real_put)
  resumed = train.train_and_evaluate(cfg, str(tmp_path / 'b'))
  assert resumed['started_from_step'] == 4
  jax.tree_util.tree_map(np.testing.assert_array_equal, _trainable(str(tmp_path / 'a')),
                         _trainable(str(tmp_path / 'b')))
  assert resumed['history'] == full['history']
  # and augmentation changed the run: the unaugmented one differs
  plain = train.train_and_evaluate(_cfg(cache_dtype='uint8'), str(tmp_path / 'c'))
  assert plain['last_train_loss'] != full['last_train_loss']


def test_only_indices_reach_the_step(tmp_path, monkeypatch):
  monkeypatch.setattr(data_registry, 'get_source', lambda cfg: _source())
  seen = []
  real_put = train.shard_lib.put_batch

  def record(batch, sharding):
    seen.append({k: (v.dtype, v.shape) for k, v in batch.items()})
    return real_put(batch, sharding)

  monkeypatch.setattr(train.shard_lib, 'put_batch', record)
  train.train_and_evaluate(_cfg(cache_dtype='uint8'), str(tmp_path))
  steps = [s for s in seen if 'index' in s]
  assert len(steps) == 9
  assert all(s == {'index': (np.int32, (32,)), 'mask': (np.bool_, (32,))} for s in steps)
  evals = [s for s in seen if 'image' in s]  # eval batches carry uint8 pixels, unnormalised
  assert evals and all(s['image'][0] == np.uint8 for s in evals)


@pytest.mark.slow
def test_device_cache_sharded_over_8_devices_matches_one_device(tmp_path, monkeypatch):
  import json
  import os
  import subprocess
  import sys
  monkeypatch.setattr(data_registry, 'get_source', lambda cfg: _source())
  one = train.train_and_evaluate(_cfg(augment=True, cache_dtype='uint8'), str(tmp_path / 'one'))
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  script = (
      'import sys, json; sys.path[:0] = ["tests", "tests/train"]; import jax;'
      'assert jax.device_count() == 8, jax.devices();'
      'import test_inputs as t; from prompt_jax.train import trainer as train;'
      'from prompt_jax.data import registry; registry.get_source = lambda cfg: t._source();'
      'cfg = t._cfg(augment=True, cache_dtype="uint8"); cfg.unlock(); cfg.mesh.fsdp = 2;'
      'r = train.train_and_evaluate(cfg, sys.argv[1]);'
      'print(json.dumps([r["last_train_loss"], r["history"]]))')
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8',
             JAX_PLATFORMS='cpu')
  out = subprocess.run([sys.executable, '-c', script, str(tmp_path / 'eight')], cwd=root,
                       env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  loss8, history8 = json.loads(out.stdout.strip().splitlines()[-1])
  assert loss8 == pytest.approx(one['last_train_loss'], abs=1e-5)
  assert [h['test'] for h in history8] == pytest.approx([h['test'] for h in one['history']])


def test_the_eval_memmap_is_decoded_again_when_the_files_change(tmp_path):
  # A memmap keyed on the config only would score old pixels after images change under data_dir
  # and the run resumes (a new process, a new source); its name also holds the files' identity.
  from PIL import Image
  from prompt_jax.train import inputs
  data_dir = tmp_path / 'vtab-1k'
  rng = np.random.default_rng(0)
  for split, n in (('train800', 2), ('val200', 2), ('train800val200', 4), ('test', 3)):
    rows = []
    for i in range(n):
      rel = f'images/{split}/{i}.png'
      (data_dir / 'cifar' / rel).parent.mkdir(parents=True, exist_ok=True)
      Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
          data_dir / 'cifar' / rel)
      rows.append(f'{rel} {i}')
    (data_dir / 'cifar' / f'{split}.txt').write_text('\n'.join(rows) + '\n')
  cfg = micro_config('vpt')
  cfg.unlock()
  cfg.data.update(source='folder', task='cifar', data_dir=str(data_dir), cache_memory_gb=0.0)
  cfg.lock()

  def test_pixels():
    source = data_registry.get_source(cfg.data)  # what a resumed run builds
    return np.concatenate([b['image'] for b in inputs.eval_batches(source, cfg, 'test', 4,
                                                                   str(tmp_path / 'wd'))])[:3]
  before = test_pixels()
  new = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
  Image.fromarray(new).save(data_dir / 'cifar' / 'images' / 'test' / '1.png')
  after = test_pixels()
  np.testing.assert_array_equal(after[0], before[0])
  np.testing.assert_allclose(after[1], new / 255.0, atol=1e-6)
  assert len(glob.glob(str(tmp_path / 'wd' / 'cache' / 'test-*.labels.npy'))) == 2


def test_the_input_path_is_chosen_once_and_both_paths_give_the_same_batches(tmp_path):
  import inspect
  from prompt_jax.train import inputs
  from prompt_jax.train import sharding
  from prompt_jax.data import device_input
  src, cfg = _source(), _cfg()
  mesh = sharding.make_mesh(cfg.mesh)

  class Streamed:  # a source that keeps no decoded splits
    splits, iterate = src.splits, src.iterate

  dev = inputs.make(cfg, src, mesh, str(tmp_path))
  host = inputs.make(_cfg(device_cache=False), src, mesh, str(tmp_path))
  assert isinstance(dev, inputs.DeviceCache) and isinstance(host, inputs.HostStream)
  assert isinstance(inputs.make(cfg, Streamed(), mesh, str(tmp_path)), inputs.HostStream)
  # The trainer asks once (inputs.make), never the config or the source again.
  assert 'device_cache' not in inspect.getsource(train)

  spe = -(-SPLITS['train800'] // cfg.train.batch_size)
  for epoch, skip in ((0, 0), (1, 1)):
    d = list(dev.train_batches(epoch, skip, spe))
    h = list(host.train_batches(epoch, skip, spe))
    assert len(d) == len(h) == spe - skip
    for db, hb in zip(d, h):
      assert set(db) == {'index', 'mask'}  # only indices cross from the host
      images = device_input.prepare(dev.cache['image'][db['index']], cfg.data.normalization)
      np.testing.assert_allclose(images, hb['image'], atol=1e-6)
      np.testing.assert_array_equal(dev.cache['label'][db['index']], hb['label'])
      np.testing.assert_array_equal(db['mask'], hb['mask'])
  d, h = next(dev.eval_batches('test', 16)), next(host.eval_batches('test', 16))
  np.testing.assert_allclose(device_input.prepare(d['image'], cfg.data.normalization), h['image'],
                             atol=1e-6)
  np.testing.assert_array_equal(d['label'], h['label'])
