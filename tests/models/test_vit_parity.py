"""Parity of our Flax ViT with an independent PyTorch implementation (transformers' ViTModel).

The HF weights are written out in the ORIGINAL formats by code in this file (not by the package):
the ViT-B_16.npz key layout and a timm-style state dict (fused qkv) saved with torch.save.
"""

import jax
import ml_collections
import numpy as np
import pytest

from prompt_jax import checkpoints
from prompt_jax.models import vit

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')


def _hf_vit(width, depth, heads, mlp, patch, image, seed=0):
  torch.manual_seed(seed)
  cfg = transformers.ViTConfig(hidden_size=width, num_hidden_layers=depth,
                               num_attention_heads=heads,
                               intermediate_size=mlp, hidden_act='gelu', layer_norm_eps=1e-6,
                               image_size=image, patch_size=patch, qkv_bias=True,
                               initializer_range=0.05)
  model = transformers.ViTModel(cfg, add_pooling_layer=False).eval()
  with torch.no_grad():  # non-trivial LayerNorm / bias values
    for name, p in model.named_parameters():
      if 'layernorm' in name or name.endswith('bias') or 'cls_token' in name:
        p.add_(0.1 * torch.randn_like(p))
  return model


def _t(x):
  return x.detach().numpy().astype(np.float32)


# transformers renamed ViT modules in v5; support both layouts.
_NAMES = {
    'prefix': ('layers.{i}.', 'encoder.layer.{i}.'),
    'query': ('attention.q_proj', 'attention.attention.query'),
    'key': ('attention.k_proj', 'attention.attention.key'),
    'value': ('attention.v_proj', 'attention.attention.value'),
    'out': ('attention.o_proj', 'attention.output.dense'),
    'fc1': ('mlp.fc1', 'intermediate.dense'),
    'fc2': ('mlp.fc2', 'output.dense'),
    'ln1': ('layernorm_before',), 'ln2': ('layernorm_after',),
}


def _layer(sd, i):
  """{short name: prefix of that tensor} for layer i, or None past the last layer."""
  for v5, prefix in enumerate(_NAMES['prefix']):
    pre = prefix.format(i=i)
    if pre + 'layernorm_before.weight' in sd:
      return {k: pre + (names[0] if len(names) == 1 else names[v5])
              for k, names in _NAMES.items() if k != 'prefix'}
  return None


def hf_to_npz_layout(sd, heads):
  """transformers ViT state dict -> the original ViT-B_16.npz keys and layouts."""
  d = sd['embeddings.cls_token'].shape[-1]
  out = {'cls': _t(sd['embeddings.cls_token']),
         'Transformer/posembed_input/pos_embedding': _t(sd['embeddings.position_embeddings']),
         'embedding/kernel': _t(sd['embeddings.patch_embeddings.projection.weight']
                                ).transpose(2, 3, 1, 0),
         'embedding/bias': _t(sd['embeddings.patch_embeddings.projection.bias']),
         'Transformer/encoder_norm/scale': _t(sd['layernorm.weight']),
         'Transformer/encoder_norm/bias': _t(sd['layernorm.bias'])}
  i = 0
  while (n := _layer(sd, i)) is not None:
    blk = f'Transformer/encoderblock_{i}/'
    mha = blk + 'MultiHeadDotProductAttention_1/'
    for ours in ('query', 'key', 'value'):
      out[mha + ours + '/kernel'] = _t(sd[n[ours] + '.weight']).T.reshape(d, heads, d // heads)
      out[mha + ours + '/bias'] = _t(sd[n[ours] + '.bias']).reshape(heads, d // heads)
    out[mha + 'out/kernel'] = _t(sd[n['out'] + '.weight']).T.reshape(heads, d // heads, d)
    out[mha + 'out/bias'] = _t(sd[n['out'] + '.bias'])
    for ours, theirs in (('LayerNorm_0', 'ln1'), ('LayerNorm_2', 'ln2')):
      out[blk + ours + '/scale'] = _t(sd[n[theirs] + '.weight'])
      out[blk + ours + '/bias'] = _t(sd[n[theirs] + '.bias'])
    for ours, theirs in (('Dense_0', 'fc1'), ('Dense_1', 'fc2')):
      out[blk + 'MlpBlock_3/' + ours + '/kernel'] = _t(sd[n[theirs] + '.weight']).T
      out[blk + 'MlpBlock_3/' + ours + '/bias'] = _t(sd[n[theirs] + '.bias'])
    i += 1
  return out


def hf_to_timm(sd):
  """transformers ViT state dict -> timm-style keys (fused qkv, OIHW conv)."""
  out = {'cls_token': sd['embeddings.cls_token'], 'pos_embed': sd['embeddings.position_embeddings'],
         'patch_embed.proj.weight': sd['embeddings.patch_embeddings.projection.weight'],
         'patch_embed.proj.bias': sd['embeddings.patch_embeddings.projection.bias'],
         'norm.weight': sd['layernorm.weight'], 'norm.bias': sd['layernorm.bias']}
  i = 0
  while (n := _layer(sd, i)) is not None:
    b = f'blocks.{i}.'
    for kind in ('weight', 'bias'):
      out[b + 'attn.qkv.' + kind] = torch.cat([sd[n[q] + '.' + kind]
                                               for q in ('query', 'key', 'value')])
      out[b + 'attn.proj.' + kind] = sd[n['out'] + '.' + kind]
      out[b + 'norm1.' + kind] = sd[n['ln1'] + '.' + kind]
      out[b + 'norm2.' + kind] = sd[n['ln2'] + '.' + kind]
      out[b + 'mlp.fc1.' + kind] = sd[n['fc1'] + '.' + kind]
      out[b + 'mlp.fc2.' + kind] = sd[n['fc2'] + '.' + kind]
    i += 1
  return {k: v.clone() for k, v in out.items()}


def _ours(variant, image, path, fmt, images_nhwc):
  arch = vit.decode_variant(variant)
  model = vit.VisionTransformer(**arch, num_classes=0)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), images_nhwc[:1]))['params']
  from flax import traverse_util
  expected = {k: v.shape for k, v in traverse_util.flatten_dict(shapes, sep='/').items()}
  cfg = ml_collections.ConfigDict({'init': {'checkpoint': path, 'format': fmt,
                                            'posemb_resize': 'linear'}})
  flat = checkpoints.load_backbone(cfg, expected)
  params = traverse_util.unflatten_dict(flat, sep='/')
  _, out = jax.jit(lambda p, x: model.apply({'params': p}, x))(params, images_nhwc)
  return np.asarray(out['normed'])


def test_vit_b16_npz_matches_transformers(tmp_path):
  hf = _hf_vit(768, 12, 12, 3072, 16, 224)
  sd = hf.state_dict()
  flat = hf_to_npz_layout(sd, 12)
  # The in21k release also carries pre_logits and a 21843-way head: the loader drops them.
  flat['pre_logits/kernel'] = np.zeros((768, 768), np.float32)
  flat['head/kernel'] = np.zeros((768, 21843), np.float32)
  path = str(tmp_path / 'ViT-B_16.npz')
  np.savez(path, **flat)
  n = sum(v.size for k, v in flat.items() if not k.startswith(('head', 'pre_')))
  assert n == 86567656 - 769000
  x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 224, 224)).astype(np.float32)
  with torch.no_grad():
    want = hf(pixel_values=torch.from_numpy(x)).last_hidden_state.numpy()
  got = _ours('B/16', 224, path, 'npz', x.transpose(0, 2, 3, 1))
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


@pytest.mark.parametrize('fmt', ['timm', 'mae', 'mocov3'])
def test_timm_style_state_dicts_match_transformers(tmp_path, fmt):
  hf = _hf_vit(64, 4, 4, 128, 8, 32, seed=1)
  sd = hf_to_timm(hf.state_dict())
  if fmt == 'mae':
    obj = {'model': sd}
  elif fmt == 'mocov3':
    obj = {'state_dict': {'module.base_encoder.' + k: v for k, v in sd.items()}, 'epoch': 300}
  else:
    obj = sd
  path = str(tmp_path / 'ckpt.pth')
  torch.save(obj, path)
  x = np.random.default_rng(1).uniform(-1, 1, (3, 3, 32, 32)).astype(np.float32)
  with torch.no_grad():
    want = hf(pixel_values=torch.from_numpy(x)).last_hidden_state.numpy()
  got = _ours('Mu/8', 32, path, fmt, x.transpose(0, 2, 3, 1))
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
