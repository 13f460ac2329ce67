"""The Python API: create_model from an original-format .npz, apply, train a step; preprocess gives
the arrays the data sources give."""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from PIL import Image

import prompt_jax
from prompt_jax.util import tree
from prompt_jax.data import registry

from helpers import micro_config


def _digits_batch(n=32):
  from prompt_jax.data import digits
  batch = next(digits.digits_source('downstream', 32).iterate('train800', n))
  return jnp.asarray(batch['image']), jnp.asarray(batch['label'])


def test_create_model_loads_the_npz_and_builds_the_trainers_model(pretrained_npz, tmp_path):
  model, params = prompt_jax.create_model('Mu/8', 'vpt', checkpoint=pretrained_npz, num_classes=5,
                                          image_size=32, num_prompts=8, deep=True, dropout=0.0)
  flat = tree.flat(params)
  with np.load(pretrained_npz) as npz:
    backbone = {k: npz[k] for k in npz.files if not k.startswith('head/')}
  assert backbone and all(np.array_equal(flat[k], v) for k, v in backbone.items())
  assert flat['prompt/prompts'].shape == (4, 8, 64) and flat['head/kernel'].shape == (64, 5)
  # the same params the trainer starts from for the same config
  from prompt_jax.train import trainer as train
  cfg = micro_config('vpt')
  cfg.unlock()
  cfg.init.checkpoint = pretrained_npz
  cfg.lock()
  setup = train.build(cfg, str(tmp_path))
  ref = tree.flat(setup.params)
  assert sorted(ref) == sorted(flat)
  for k in ref:
    np.testing.assert_array_equal(ref[k], flat[k], err_msg=k)
  images, _ = _digits_batch(4)
  logits, _ = model.apply({'params': params}, images)
  assert logits.shape == (4, 5) and np.all(np.isfinite(logits))


def test_a_train_step_moves_only_the_trainable_half(pretrained_npz):
  model, params = prompt_jax.create_model('Mu/8', 'vpt', checkpoint=pretrained_npz, num_classes=5,
                                          image_size=32, num_prompts=4, deep=False)
  trainable, frozen = prompt_jax.split_params(params, 'vpt')
  assert set(trainable) == {'prompt', 'head'} and 'Transformer' in frozen
  images, labels = _digits_batch()
  tx = optax.sgd(0.5)
  opt_state = tx.init(trainable)

  def loss_fn(t):
    logits, _ = model.apply({'params': tree.merge(t, frozen)}, images, train=True,
                            rngs={'dropout': jax.random.PRNGKey(0)})
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  @jax.jit
  def step(t, s):
    loss, g = jax.value_and_grad(loss_fn)(t)
    u, s = tx.update(g, s, t)
    return optax.apply_updates(t, u), s, loss

  losses = []
  for _ in range(5):
    trainable, opt_state, loss = step(trainable, opt_state)
    losses.append(float(loss))
  assert losses[-1] < losses[0]
  after = tree.merge(trainable, frozen)
  assert not np.array_equal(after['prompt']['prompts'], params['prompt']['prompts'])
  np.testing.assert_array_equal(after['Transformer']['encoder_norm']['scale'],
                                params['Transformer']['encoder_norm']['scale'])


def test_create_model_errors_name_the_fix():
  with pytest.raises(TypeError, match="'checkpoint'"):  # the backbone is explicit
    prompt_jax.create_model('Mu/8', 'vpt', num_classes=5, image_size=32)
  with pytest.raises(TypeError, match='num_prompts'):
    prompt_jax.create_model(
        'Mu/8', 'vpt', checkpoint='random', num_classes=5, image_size=32, num_prompt=4)
  with pytest.raises(TypeError, match='takes no options'):
    prompt_jax.create_model(
        'Mu/8', 'linear', checkpoint='random', num_classes=5, image_size=32, deep=True)
  with pytest.raises(ValueError, match='prepared'):
    prompt_jax.create_model(
        'Mu/8', 'ship', checkpoint='random', num_classes=5, image_size=32)
  with pytest.raises(KeyError, match='model.pooling'):
    prompt_jax.create_model(
        'Mu/8', 'vpt', checkpoint='random', num_classes=5, overrides={'model.pooling': 'x'})


def _images(seed, sizes=((23, 31), (40, 17), (32, 32))):
  rng = np.random.default_rng(seed)
  return [rng.integers(0, 256, s + (3,), dtype=np.uint8) for s in sizes]


@pytest.mark.parametrize('resize_to,antialias', [('square', False), ('shorter_side', True)])
def test_preprocess_equals_the_folder_source(tmp_path, resize_to, antialias):
  """vtab-1k folder layout read by the 'folder' source (the TFDS image path) vs preprocess, on
  non-square images: shorter_side + antialias are DA-VPT's and SPT's eval path."""
  images = _images(0)
  task_dir = tmp_path / 'dtd'
  task_dir.mkdir()
  for i, img in enumerate(images):
    Image.fromarray(img).save(task_dir / f'{i}.png')
  for split in ('train800', 'val200', 'train800val200', 'test'):
    (task_dir / f'{split}.txt').write_text(''.join(f'{i}.png {i}\n' for i in range(len(images))))
  config = prompt_jax.model_config(overrides={
      'data.source': 'folder', 'data.task': 'dtd', 'data.data_dir': str(tmp_path),
      'data.image_size': 24, 'data.resize': 'bicubic', 'data.crop_pct': 0.875,
      'data.normalization': 'imagenet', 'data.resize_to': resize_to,
      'data.antialias': antialias})
  batch = next(registry.get_source(config.data).iterate('test', len(images)))
  got = prompt_jax.preprocess(images, config)
  assert got.shape == (3, 24, 24, 3) and got.dtype == np.float32
  np.testing.assert_allclose(got, batch['image'], atol=1e-5)
  np.testing.assert_allclose(prompt_jax.preprocess(images[1], config.data), batch['image'][1],
                             atol=1e-5)
  # the model's image size (create_model's image_size) wins over the config's
  config.unlock()
  config.data.image_size = 16
  small = next(registry.get_source(config.data).iterate('test', len(images)))['image']
  np.testing.assert_allclose(prompt_jax.preprocess(images, config.data, image_size=16), small,
                             atol=1e-5)
  config.data.image_size = 24
  np.testing.assert_allclose(prompt_jax.preprocess(images, config, image_size=16), small,
                             atol=1e-5)


def test_preprocess_equals_the_fewshot_source(tmp_path):
  images = _images(1)
  split = {'train': [], 'val': [], 'test': []}
  for i, img in enumerate(images):
    Image.fromarray(img).save(tmp_path / f'{i}.png')
    for part in split:
      split[part].append([f'{i}.png', i, f'class{i}'])
  (tmp_path / 'split.json').write_text(json.dumps(split))
  data = ml_collections.ConfigDict(dict(
      source='fewshot', task='x', split_file=str(tmp_path / 'split.json'),
      data_dir=str(tmp_path), shots=-1, fewshot_seed=1, subset='all', image_size=20,
      normalization='clip', augment=True))
  src = registry.get_source(data)
  batch = next(src.iterate('test', len(images)))
  np.testing.assert_allclose(prompt_jax.preprocess(images, data), batch['image'], atol=1e-6)


def test_preprocess_digits_and_config_files():
  from sklearn.datasets import load_digits
  from prompt_jax.data import digits
  raw = load_digits().images[:3]
  got = prompt_jax.preprocess((raw * 255 / 16).round().astype(np.uint8)[..., None],
                              os.path.join('configs', 'demo.py'))
  x, _ = digits._images(32)
  order = np.random.default_rng(0).permutation(len(load_digits().images))
  want = (x[np.argsort(order)[:3]] - 0.5) / 0.5
  np.testing.assert_allclose(got, want, atol=0.01)  # uint8 rounding of the 16 grey levels


def test_preprocess_rejects_float_images():
  with pytest.raises(ValueError, match='uint8'):
    prompt_jax.preprocess(np.zeros((8, 8, 3), np.float32), prompt_jax.model_config())
