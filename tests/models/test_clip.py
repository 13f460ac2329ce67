"""CLIP towers vs transformers' CLIPModel (tiny random config, QuickGELU), fp32 to 1e-4."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_jax.checkpoints import clip as clip_ckpt
from prompt_jax.models import clip
from tests import clip_helpers

torch = pytest.importorskip('torch')
pytest.importorskip('transformers')


def _expected(model):
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3))))
  return {'/'.join(k): v.shape for k, v in
          __import__('flax').traverse_util.flatten_dict(shapes['params']).items()}


def _nest(flat):
  from flax import traverse_util
  return traverse_util.unflatten_dict({k: jnp.asarray(v) for k, v in flat.items()}, sep='/')


def _inputs(rng):
  images = rng.normal(size=(3, 32, 32, 3)).astype(np.float32)
  ids = rng.integers(1, 60, size=(4, 12))
  ids[:, 0] = 62  # SOT
  for row, end in enumerate((3, 7, 11, 5)):
    ids[row, end] = 63  # EOT (max id); tokens after it are padding
    ids[row, end + 1:] = 0
  return images, ids


@pytest.fixture(scope='module')
def hf_setup(tmp_path_factory):
  from safetensors.numpy import save_file
  hf = clip_helpers.hf_model(seed=0)
  sd = clip_helpers.hf_state_numpy(hf)
  path = tmp_path_factory.mktemp('hf') / 'model.safetensors'
  save_file(sd, str(path))
  return hf, sd, str(path)


def test_hf_parity(hf_setup):
  hf, _, path = hf_setup
  model = clip.CLIP(**clip_helpers.TINY)
  flat = clip_ckpt.load(path, 'clip_hf', _expected(model))
  params = _nest(flat)
  images, ids = _inputs(np.random.default_rng(0))
  with torch.no_grad():
    out = hf(input_ids=torch.tensor(ids), pixel_values=torch.tensor(images.transpose(0, 3, 1, 2)))
  img, _ = model.apply({'params': params}, images)
  txt = model.apply({'params': params}, ids, method=clip.CLIP.encode_text)
  logits = model.apply({'params': params}, images, ids, method=clip.CLIP.logits)
  with torch.no_grad():
    pix = torch.tensor(images.transpose(0, 3, 1, 2))
    raw_img = hf.visual_projection(hf.vision_model(pixel_values=pix).pooler_output).numpy()
    raw_txt = hf.text_projection(hf.text_model(input_ids=torch.tensor(ids)).pooler_output).numpy()
  np.testing.assert_allclose(img, raw_img, atol=1e-4, rtol=1e-4)
  np.testing.assert_allclose(txt, raw_txt, atol=1e-4, rtol=1e-4)
  np.testing.assert_allclose(clip.l2_normalize(img), out.image_embeds.numpy(), atol=1e-4)
  np.testing.assert_allclose(clip.l2_normalize(txt), out.text_embeds.numpy(), atol=1e-4)
  np.testing.assert_allclose(logits, out.logits_per_image.numpy(), atol=1e-4, rtol=1e-4)


def test_openai_layout_loads_to_same_outputs(hf_setup, tmp_path):
  _, sd, path = hf_setup
  model = clip.CLIP(**clip_helpers.TINY)
  expected = _expected(model)
  npz = tmp_path / 'openai.npz'
  np.savez(npz, **clip_helpers.to_openai(sd))
  a = clip_ckpt.load(path, 'clip_hf', expected)
  b = clip_ckpt.load(str(npz), 'clip_openai', expected)
  assert sorted(a) == sorted(b)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  images, ids = _inputs(np.random.default_rng(1))
  la = model.apply({'params': _nest(a)}, images, ids, method=clip.CLIP.logits)
  lb = model.apply({'params': _nest(b)}, images, ids, method=clip.CLIP.logits)
  np.testing.assert_allclose(la, lb, atol=1e-6)


def test_causal_mask_and_eot_pooling():
  model = clip.CLIP(**clip_helpers.TINY)
  ids = np.array([[62, 5, 63, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
  params = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
  enc = jax.jit(lambda p, t: model.apply(p, t, method=clip.CLIP.encode_text))
  a = enc(params, ids)
  ids2 = ids.copy()
  ids2[0, 3:] = 7  # tokens after EOT cannot change the EOT feature (causal)
  b = enc(params, ids2)
  np.testing.assert_allclose(a, b, atol=1e-6)


def test_variants():
  kw = clip.clip_kwargs('B/16')
  assert (kw['vision_width'], kw['patch_size'], kw['text_width'], kw['context_length'],
          kw['vocab_size']) == (768, 16, 512, 77, 49408)
  assert clip.clip_kwargs('L/14')['embed_dim'] == 768
