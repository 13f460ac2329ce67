"""SAP: description feature vs a loop transcription, IVLP prompt placement, loss, base-to-novel."""

import gzip
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_jax.methods import base
from prompt_jax.methods import sap
from prompt_jax.models import clip
from prompt_jax.models.prompter import BlockOutput
from prompt_jax.text import tokenizer as tok_lib

# A tiny CLIP for these tests, selected by config.model.variant.
TINY_ARCH = dict(embed_dim=16, image_size=32, patch_size=8, vision_width=32, vision_layers=2,
                 vision_heads=4, context_length=40, vocab_size=560, text_width=32, text_layers=2,
                 text_heads=4)
clip.VARIANTS['test_tiny/8'] = TINY_ARCH
CLASSES = ['cat', 'dog', 'red_bird', 'fish']
DESCRIPTIONS = {'cat': ['pointy ears', 'whiskers, and a long tail.'],
                'dog': ['a wet nose', 'floppy ears'],
                'red bird': ['red feathers', 'a beak', 'two wings'],
                'fish': ['fins and scales']}
MERGES = [('a', 'n'), ('t', 'h'), ('e', 'r'), ('p', 'h'), ('ph', 'o'), ('t', 'o</w>'),
          ('o', 'f</w>'), ('i', 'n')]


# --------------------------------------------------------------- the description feature


def _softmax(v):
  e = np.exp(v - v.max())
  return e / e.sum()


def description_feature_loops(g, x, a):
  """The spec's formula, one image and one description at a time (float64)."""
  b, n, e = x.shape
  m = a.shape[0]
  out = np.zeros((b, e))
  for i in range(b):
    r = _softmax(np.array([g[i] @ a[k] for k in range(m)]))
    lam = 0.0
    f_tilde = np.zeros(e)
    for k in range(m):
      s = _softmax(np.array([a[k] @ x[i, j] for j in range(n)]))
      f_k = sum(s[j] * x[i, j] for j in range(n))
      lam += r[k] * s.max()
      f_tilde += r[k] * f_k
    f = (1 - lam) * g[i] + lam * f_tilde
    out[i] = f / np.sqrt((f ** 2).sum())
  return out


def test_description_feature_matches_loops():
  rng = np.random.default_rng(0)
  g, x, a = rng.normal(size=(3, 8)), rng.normal(size=(3, 5, 8)), rng.normal(size=(4, 8))
  got = sap.description_feature(jnp.asarray(g, jnp.float32), jnp.asarray(x, jnp.float32),
                                jnp.asarray(a, jnp.float32))
  np.testing.assert_allclose(got, description_feature_loops(g, x, a), atol=1e-5)


def test_class_average_and_templating():
  raw, texts, owner = sap.description_table(CLASSES, DESCRIPTIONS)
  # The whole description (the release keeps only the part after the first comma), with the
  # release's processing: commas and periods removed.
  assert texts[1] == 'a photo of a cat, which has whiskers and a long tail.'
  assert texts[4] == 'a photo of a red bird, which has red feathers.'
  np.testing.assert_array_equal(owner, [0, 0, 1, 1, 2, 2, 2, 3])
  w = sap.class_average(owner, 4)
  s = np.arange(16.0).reshape(2, 8)
  np.testing.assert_allclose((s @ w)[1], [8.5, 10.5, 13.0, 15.0])
  with pytest.raises(KeyError, match='horse'):
    sap.description_table(['horse'], DESCRIPTIONS)


def test_template_which_as_the_release():
  # The release (process_attributes): 'which ' + d when d's first word is 'is' or 'has', else
  # 'which has ' + d; never "which has has".
  t = sap.templated
  assert t('Red_Bird', 'has a long neck') == 'a photo of a red bird, which has a long neck.'
  assert t('cat', 'is small and furry.') == 'a photo of a cat, which is small and furry.'
  assert sap.templated('dog', 'floppy ears') == 'a photo of a dog, which has floppy ears.'
  assert sap.templated('dog', 'hasty look') == 'a photo of a dog, which has hasty look.'
  assert sap.templated('fish', 'Has 3.5 fins') == 'a photo of a fish, which has Has 35 fins.'
  with pytest.raises(ValueError, match='which has has'):  # the old template would double it
    sap.templated('cat', 'has ears', 'a photo of a {classname}, which has {description}.')


# --------------------------------------------------------------- fixtures


@pytest.fixture(scope='module')
def assets(tmp_path_factory):
  """BPE vocab (OpenAI gz format), descriptions JSON, a CoOp-style folder + split file."""
  from PIL import Image
  d = tmp_path_factory.mktemp('sap')
  with gzip.open(d / tok_lib.VOCAB_FILE, 'wt', encoding='utf-8') as f:
    f.write('#version: 0.2\n' + '\n'.join(f'{a} {b}' for a, b in MERGES) + '\n')
  (d / 'desc.json').write_text(json.dumps(DESCRIPTIONS))
  rng = np.random.default_rng(0)
  split = {'train': [], 'val': [], 'test': []}
  (d / 'images').mkdir()
  for c, name in enumerate(CLASSES):
    for i in range(8):
      img = np.clip(rng.normal(60 * c + 40, 30, size=(40, 48, 3)), 0, 255).astype(np.uint8)
      rel = f'{name}_{i}.png'
      Image.fromarray(img).save(d / 'images' / rel)
      part = 'train' if i < 5 else ('val' if i == 5 else 'test')
      split[part].append([rel, c, name])
  (d / 'split.json').write_text(json.dumps(split))
  return d


def tiny_config(assets, workdir=None, **sap_over):
  from prompt_jax.configs import sap_b2n
  c = sap_b2n.get_config()
  c.unlock()
  c.model.variant = 'test_tiny/8'
  c.sap.update(dict(depth=2, descriptions=str(assets / 'desc.json'), bpe_path=str(assets),
                    encode_batch=8), **sap_over)
  c.init.checkpoint = 'random'
  c.data.update(dict(split_file=str(assets / 'split.json'), data_dir=str(assets / 'images'),
                     image_size=32, shots=4))
  c.train.update(dict(epochs=1, batch_size=4, eval_batch_size=8, eval_every_epochs=1,
                      checkpoint_every_steps=100, log_every_steps=1, export=True))
  c.lock()
  return c


def _prepared_model(config, classnames):
  arch = sap.SAP.arch(config)
  backbone = sap.build_backbone(config, arch)
  params = jax.jit(backbone.init)(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))['params']
  prepared = sap.prepare_classes(config, backbone, params, classnames)
  model = sap.build_model(config, arch, len(classnames), prepared)
  full = jax.jit(model.init)(jax.random.PRNGKey(1), jnp.zeros((1, 32, 32, 3)))['params']
  full = dict(full, **params)
  return model, sap.init_params(full, prepared, config), prepared, params


@pytest.fixture(scope='module')
def tiny(assets):
  config = tiny_config(assets)
  return (config,) + _prepared_model(config, CLASSES)


# --------------------------------------------------------------- prompts


def test_prompt_placement(assets, tiny):
  _, _, params, prepared, _ = tiny
  tok = tok_lib.Tokenizer.from_file(str(assets / tok_lib.VOCAB_FILE), 40)
  ctx_ids = tok.tokenize('a photo of a')[0, 1:5]
  np.testing.assert_array_equal(prepared['ctx_ids'], ctx_ids)
  table = params['text']['token_embedding']['embedding']
  np.testing.assert_allclose(params['text_prompt']['ctx'], table[ctx_ids])
  assert params['text_prompt']['deep'].shape == (1, 4, 32)
  assert params['visual_prompt']['prompts'].shape == (2, 4, 32)
  # text: ctx replaces positions 1..4 at layer 0, deep prompts at layer 1
  p = sap.IVLPTextPrompter(4, 32, 2)
  x = jnp.arange(2 * 9 * 32, dtype=jnp.float32).reshape(2, 9, 32)
  v = {'params': {'ctx': jnp.ones((4, 32)), 'deep': 2 * jnp.ones((1, 4, 32))}}
  y0 = p.apply(v, 0, BlockOutput(x), False, method=p.insert)
  y1 = p.apply(v, 1, BlockOutput(x), False, method=p.insert)
  np.testing.assert_array_equal(y0[:, 1:5], 1.0)
  np.testing.assert_array_equal(y1[:, 1:5], 2.0)
  np.testing.assert_array_equal(y0[:, [0, 5, 6, 7, 8]], x[:, [0, 5, 6, 7, 8]])
  # vision: appended after the patches at layer 0, the last 4 replaced at layer 1
  q = sap.IVLPVisionPrompter(4, 32, 2, 16)
  w = {'params': {'prompts': jnp.stack([jnp.ones((4, 32)), 2 * jnp.ones((4, 32))]),
                  'token_bias': jnp.zeros(16)}}
  z0 = q.apply(w, 0, BlockOutput(x), False, method=q.insert)
  assert z0.shape == (2, 13, 32)
  np.testing.assert_array_equal(z0[:, :9], x)
  z1 = q.apply(w, 1, BlockOutput(z0), False, method=q.insert)
  np.testing.assert_array_equal(z1[:, 9:], 2.0)
  np.testing.assert_array_equal(z1[:, :9], x)


def test_padding_rows_leave_loss_and_gradients_unchanged(tiny):
  # train.drop_last=False pads the last batch: its padding rows must not count (CE, image L1).
  config, model, params, _, _ = tiny
  rng = np.random.default_rng(1)
  real = jnp.asarray(rng.normal(size=(2, 32, 32, 3)), jnp.float32)
  padded = jnp.concatenate([real, 10 * jnp.asarray(rng.normal(size=(2, 32, 32, 3)), jnp.float32)])

  def loss(p, images, labels, mask):
    logits, out = model.apply({'params': p}, images, train=True)
    batch = {'image': images, 'label': labels, 'mask': mask}
    return sap.loss(base.LossInputs(logits, out, {}, batch, {}, config))[0]

  grad = jax.jit(jax.value_and_grad(loss))
  a, ga = grad(params, real, jnp.array([0, 2]), jnp.ones(2, bool))
  b, gb = grad(params, padded, jnp.array([0, 2, 1, 3]), jnp.array([True, True, False, False]))
  np.testing.assert_allclose(float(a), float(b), rtol=1e-5)
  close = lambda u, v: np.testing.assert_allclose(  # float32 noise relative to the leaf's scale
      u, v, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(u).max())))
  jax.tree_util.tree_map(close, ga, gb)


def test_loss_and_gradients(tiny):
  config, model, params, _, _ = tiny
  images = jnp.asarray(np.random.default_rng(0).normal(size=(3, 32, 32, 3)), jnp.float32)
  batch = {'image': images, 'label': jnp.array([0, 2, 3]), 'mask': jnp.array([True, True, False])}

  def f(p):
    logits, out = model.apply({'params': p}, images, train=True)
    assert logits.shape == (3, 4)
    return sap.loss(base.LossInputs(logits, out, {}, batch, {}, config))

  (loss, metrics), grads = jax.jit(jax.value_and_grad(f, has_aux=True))(params)
  assert np.isfinite(loss) and set(metrics) == {'ce', 'text_l1', 'image_l1'}
  # at init the text ctx is "a photo of a" but deep prompts are random: text_l1 > 0
  assert metrics['text_l1'] > 0
  for path in (('text_prompt', 'ctx'), ('text_prompt', 'deep'), ('visual_prompt', 'prompts'),
               ('visual_prompt', 'token_bias')):
    assert float(jnp.abs(grads[path[0]][path[1]]).sum()) > 0, path
  # passing cached text features gives the same logits
  t = jax.jit(lambda p: model.apply({'params': p}, method=sap.SAPModel.encode_descriptions))(params)
  fwd = jax.jit(lambda p, x, t: model.apply({'params': p}, x, text_features=t)[0])
  np.testing.assert_allclose(fwd(params, images, None), fwd(params, images, t), atol=1e-5)


def test_trimmed_text_is_exact(tiny):
  _, model, params, prepared, _ = tiny
  assert prepared['ids'].shape[1] == 40 and prepared['ids'].argmax(-1).max() + 1 < 40
  full = jax.jit(lambda p, t: model.apply({'params': p}, t, method=clip.CLIP.encode_text))(
      params, prepared['ids'])
  got = jax.jit(lambda p: model.apply({'params': p}, method=sap.SAPModel.encode_descriptions))(
      params)
  np.testing.assert_allclose(got, clip.l2_normalize(full), atol=1e-5)


def test_frozen_text_cache(assets, tiny):
  _, _, trained_params, prepared, _ = tiny
  config = tiny_config(assets, text_prompts='frozen')
  with pytest.raises(ValueError, match='train.frozen'):
    sap.init_params(dict(trained_params), prepared, config)
  config.unlock()
  config.train.frozen = (r'^text_prompt/', r'^text_cache')
  config.lock()
  model = sap.build_model(config, sap.SAP.arch(config), len(CLASSES), prepared)
  params = dict(trained_params, text_cache=jnp.zeros((8, 16)))
  params = sap.init_params(params, prepared, config)
  t = jax.jit(lambda p: model.apply({'params': p}, method=sap.SAPModel.encode_descriptions))(params)
  np.testing.assert_allclose(params['text_cache'], t, atol=1e-6)
  fwd = jax.jit(lambda p, x, t: model.apply({'params': p}, x, text_features=t)[0])
  images = jnp.zeros((2, 32, 32, 3))
  np.testing.assert_allclose(fwd(params, images, None), fwd(params, images, t), atol=1e-5)


# --------------------------------------------------------------- base-to-novel end to end


def test_base_to_novel_end_to_end(assets, tmp_path):
  """Weights from a tiny transformers CLIPModel (clip_hf format, safetensors, no torch at load);
  the BPE vocabulary is found next to them."""
  pytest.importorskip('torch')
  from safetensors.numpy import save_file
  from prompt_jax.protocol import b2n
  from tests import clip_helpers
  hf = clip_helpers.hf_model(seed=0, context_length=40, vocab_size=560)
  save_file(clip_helpers.hf_state_numpy(hf), str(assets / 'model.safetensors'))
  config = tiny_config(assets, bpe_path='')
  config.unlock()
  config.init.update(dict(checkpoint=str(assets / 'model.safetensors'), format='clip_hf'))
  config.lock()
  res = b2n.run(config, str(tmp_path))
  for k in ('base', 'novel', 'hm'):
    assert 0.0 <= res[k] <= 1.0 and 0.0 <= res['zeroshot'][k] <= 1.0
  assert res['hm'] == pytest.approx(sap.harmonic_mean(res['base'], res['novel']))
  assert res['train']['steps'] == 2  # 2 base classes x 4 shots / batch 4
  # the trainer's own evaluation (text re-encoded per batch) agrees with b2n's cached-text one
  assert res['base'] == pytest.approx(res['train']['test'])
  assert (tmp_path / 'b2n.json').exists()


def test_fewshot_protocol(assets):
  from prompt_jax.data import fewshot
  labels = np.repeat(np.arange(5), 10)
  a = fewshot.sample_few_shot(labels, 3, seed=1)
  np.testing.assert_array_equal(a, fewshot.sample_few_shot(labels, 3, seed=1))
  assert not np.array_equal(a, fewshot.sample_few_shot(labels, 3, seed=2))
  assert np.bincount(labels[a]).tolist() == [3] * 5
  assert fewshot.base_novel_classes(5) == ([0, 1, 2], [3, 4])
  items, names = fewshot.folder_items(str(assets / 'split.json'), str(assets / 'images'))
  src = fewshot.build_source(items, names, shots=2, seed=1, subset='novel', image_size=32)
  assert src.classnames == ['red_bird', 'fish'] and src.splits == {'train': 4, 'val': 2, 'test': 4}
  batch = next(src.iterate('train', 4, shuffle_seed=0))
  assert batch['image'].shape == (4, 32, 32, 3) and set(batch['label']) <= {0, 1}
  again = next(src.iterate('train', 4, shuffle_seed=0))
  np.testing.assert_array_equal(batch['image'], again['image'])  # augmentation is seeded
