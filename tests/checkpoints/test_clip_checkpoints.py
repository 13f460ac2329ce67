"""CLIP checkpoint loaders: formats, registry, and errors that name the offending keys."""

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from prompt_jax import checkpoints
from prompt_jax.checkpoints import clip as clip_ckpt
from prompt_jax.models import clip
from tests import clip_helpers

torch = pytest.importorskip('torch')
pytest.importorskip('transformers')


@pytest.fixture(scope='module')
def weights():
  model = clip.CLIP(**clip_helpers.TINY)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3))))
  expected = {'/'.join(k): v.shape for k, v in
              flax.traverse_util.flatten_dict(shapes['params']).items()}
  sd = clip_helpers.hf_state_numpy(clip_helpers.hf_model(seed=1))
  return expected, sd


def test_torch_save_state_dict_and_registry(weights, tmp_path):
  expected, sd = weights
  openai = clip_helpers.to_openai(sd)
  pt = tmp_path / 'clip.pt'
  torch.save({k: torch.tensor(v) for k, v in openai.items()}, pt)
  npz = tmp_path / 'clip.npz'
  np.savez(npz, **openai)
  a = clip_ckpt.load(str(pt), 'clip_openai', expected)
  cfg = ml_collections.ConfigDict({'init': {'checkpoint': str(npz), 'format': 'clip_openai',
                                            'posemb_resize': 'linear'}})
  b = checkpoints.load_backbone(cfg, expected)
  for k in expected:
    np.testing.assert_array_equal(a[k], b[k])


def test_hf_directory(weights, tmp_path):
  from safetensors.numpy import save_file
  expected, sd = weights
  save_file(sd, str(tmp_path / 'model.safetensors'))
  flat = clip_ckpt.load(str(tmp_path), 'clip_hf', expected)
  assert set(flat) == set(expected)


def test_errors_name_keys(weights, tmp_path):
  expected, sd = weights
  openai = clip_helpers.to_openai(sd)
  del openai['visual.ln_post.bias']
  openai['visual.extra_thing'] = np.zeros(3, np.float32)
  openai['text_projection'] = np.zeros((5, 16), np.float32)
  npz = tmp_path / 'bad.npz'
  np.savez(npz, **openai)
  with pytest.raises(checkpoints.CheckpointError) as e:
    clip_ckpt.load(str(npz), 'clip_openai', expected)
  msg = str(e.value)
  assert 'visual/ln_post/bias' in msg and 'visual.extra_thing' in msg
  assert 'text/text_projection' in msg and '(5, 16)' in msg


def test_posemb_resize(weights, tmp_path):
  expected, sd = weights
  npz = tmp_path / 'clip.npz'
  np.savez(npz, **clip_helpers.to_openai(sd))
  bigger = dict(expected, **{'visual/positional_embedding': (26, 32)})  # 5x5 grid + CLS
  flat = clip_ckpt.load(str(npz), 'clip_openai', bigger)
  assert flat['visual/positional_embedding'].shape == (26, 32)


def test_torchscript_archive_is_read_with_torch(tmp_path):
  class Visual(torch.nn.Module):
    def __init__(self):
      super().__init__()
      self.class_embedding = torch.nn.Parameter(torch.arange(4.0))

    def forward(self, x):
      return x + self.class_embedding

  class Top(torch.nn.Module):
    def __init__(self):
      super().__init__()
      self.visual = Visual()
      self.logit_scale = torch.nn.Parameter(torch.tensor(4.6))

    def forward(self, x):
      return self.visual(x) * self.logit_scale

  path = tmp_path / 'ViT-tiny.pt'
  torch.jit.script(Top()).save(str(path))
  sd = clip_ckpt.read_openai(str(path))
  np.testing.assert_array_equal(sd['visual.class_embedding'], np.arange(4.0))
  assert sd['logit_scale'] == pytest.approx(4.6)
