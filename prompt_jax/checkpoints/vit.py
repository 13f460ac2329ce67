"""Backbone checkpoints -> our flat '/'-joined ViT params (the original .npz names).

Formats (`config.init.format`):
  npz     original ViT / augreg `.npz` (already our names; `pre_logits/*` and `head/*` are dropped:
          the prompt-tuning seeds classify CLS after encoder_norm with a new head). A flax msgpack
          checkpoint is detected and read too: vit_jax/train.py's `checkpoint_<step>` of
          (params, opt_state, step) gives its params, as do flax.optim's {'target': params, ...},
          a TrainState's {'step', 'params', 'opt_state'}, {'params': tree} or a bare params tree.
The original Flax ViT uses tanh-approximated GELU (flax `nn.gelu`): `model.act='gelu_tanh'`
reproduces its outputs; the default exact GELU reproduces the PyTorch releases.
  timm    a timm-style state dict (`cls_token`, `pos_embed`, `patch_embed.proj`, `blocks.i.*`,
          `norm`).
  mae     timm-style inside key 'model' (`mae_pretrain_vit_base.pth`).
  mocov3  timm-style inside key 'state_dict' with `module.` / `module.base_encoder.` prefixes
          (`linear-vit-b-300ep.pth.tar`).
Every load is validated against the model: missing, unexpected and mis-shaped keys are named.
"""

from __future__ import annotations

import re
from typing import Any
from collections.abc import Callable, Mapping

from absl import logging
import numpy as np

from prompt_jax import checkpoints
from prompt_jax.checkpoints import errors
from prompt_jax.checkpoints import posemb as posemb_lib
from prompt_jax.checkpoints import state_dict

POSEMB = 'Transformer/posembed_input/pos_embedding'
# Keys a prompt-tuning backbone never uses; dropped silently (documented above).
_NPZ_IGNORED = re.compile(r'^(pre_logits|head)/')
_TIMM_IGNORED = re.compile(r'^(head|fc_norm|pre_logits|decoder_|mask_token|head_dist|dist_token)')


def _timm_block(i: int, name: str, w: np.ndarray, heads: int) -> dict[str, np.ndarray]:
  """One timm block tensor -> our key(s). Linear weights are [out, in] in PyTorch."""
  blk = f'Transformer/encoderblock_{i}'
  mha = f'{blk}/MultiHeadDotProductAttention_1'
  ln = {'norm1': 'LayerNorm_0', 'norm2': 'LayerNorm_2'}
  mod, _, kind = name.rpartition('.')
  if mod in ln:
    return {f'{blk}/{ln[mod]}/{"scale" if kind == "weight" else "bias"}': w}
  if mod == 'attn.qkv':
    d = w.shape[-1] if kind == 'weight' else w.shape[0] // 3
    out = {}
    for j, part in enumerate(('query', 'key', 'value')):
      chunk = w[j * d:(j + 1) * d]
      if kind == 'weight':
        out[f'{mha}/{part}/kernel'] = chunk.T.reshape(d, heads, d // heads)
      else:
        out[f'{mha}/{part}/bias'] = chunk.reshape(heads, d // heads)
    return out
  if mod == 'attn.proj':
    d = w.shape[0]
    return {f'{mha}/out/kernel': w.T.reshape(heads, d // heads, d)} if kind == 'weight' else {
        f'{mha}/out/bias': w}
  mlp = {'mlp.fc1': 'Dense_0', 'mlp.fc2': 'Dense_1'}
  if mod in mlp:
    return {f'{blk}/MlpBlock_3/{mlp[mod]}/{"kernel" if kind == "weight" else "bias"}':
            w.T if kind == 'weight' else w}
  return {f'<unknown>/blocks.{i}.{name}': w}


def from_timm(sd: Mapping[str, np.ndarray], heads: int) -> dict[str, np.ndarray]:
  """timm-style state dict -> our flat params (unknown keys are kept under '<unknown>/...')."""
  out: dict[str, np.ndarray] = {}
  for key, w in sd.items():
    w = np.asarray(w)
    if _TIMM_IGNORED.match(key):
      continue
    m = re.match(r'^blocks\.(\d+)\.(.+)$', key)
    if m:
      out.update(_timm_block(int(m.group(1)), m.group(2), w, heads))
    elif key == 'cls_token':
      out['cls'] = w
    elif key == 'pos_embed':
      out[POSEMB] = w
    elif key == 'patch_embed.proj.weight':
      out['embedding/kernel'] = w.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    elif key == 'patch_embed.proj.bias':
      out['embedding/bias'] = w
    elif key in ('norm.weight', 'norm.bias'):
      out['Transformer/encoder_norm/' + ('scale' if key.endswith('weight') else 'bias')] = w
    else:
      out[f'<unknown>/{key}'] = w
  return out


def _unwrap(obj: Any, key: str, path: str) -> Mapping[str, np.ndarray]:
  if isinstance(obj, Mapping) and key in obj:
    return obj[key]
  if isinstance(obj, Mapping) and all(isinstance(v, np.ndarray) for v in obj.values()):
    return obj
  found = sorted(obj)[:10] if isinstance(obj, Mapping) else type(obj)
  raise errors.CheckpointError(f'{path}: expected a state dict under key {key!r}; found {found}')


def _strip_prefixes(sd: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  out = {}
  for k, v in sd.items():
    for p in ('module.base_encoder.', 'module.', 'base_encoder.'):
      if k.startswith(p):
        k = k[len(p):]
        break
    if k.startswith(('momentum_encoder.', 'predictor.')):
      continue
    out[k] = v
  return out


def _flat(tree: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
  out = {}
  for k, v in tree.items():
    if isinstance(v, Mapping):
      out.update(_flat(v, f'{prefix}{k}/'))
    else:
      out[f'{prefix}{k}'] = v
  return out


def _flax_params(raw: Mapping[str, Any], path: str) -> Mapping[str, Any]:
  """The params tree of a flax msgpack checkpoint: vit_jax/train.py's (params, opt_state, step),
  saved as {'0': params, '1': opt_state, '2': step}; the older flax.optim Optimizer's
  {'target': params, 'state': ...}; a flax TrainState {'step', 'params', 'opt_state', ...}."""
  tree = raw
  if set(tree) == {'0', '1', '2'}:
    tree = tree['0']
  elif 'target' in tree and 'Transformer' not in tree:  # flax.optim Optimizer: {target, state}
    tree = tree['target']
  elif {'params', 'step'} <= set(tree):  # a flax TrainState: {step, params, opt_state, ...}
    tree = tree['params']
  while isinstance(tree, Mapping) and set(tree) == {'params'}:
    tree = tree['params']
  if not (isinstance(tree, Mapping) and 'Transformer' in tree):
    raise errors.CheckpointError(
        f'{path} is a flax msgpack checkpoint with top-level keys {sorted(raw)[:10]}, not the '
        "original ViT's: expected vit_jax/train.py's (params, opt_state, step), {'params': ...} or "
        "a params tree with 'Transformer'. Convert it: restore it with "
        'flax.serialization.msgpack_restore, take the ViT params tree and save it flattened with '
        "'/' as an .npz (np.savez), as the original release's .npz files.")
  return tree


def _load_npz(path: str, heads: int) -> dict[str, np.ndarray]:
  del heads
  raw = state_dict.read(path)
  if any(isinstance(v, Mapping) for v in raw.values()):  # a nested (flax msgpack) checkpoint
    raw = _flat(_flax_params(raw, path))
  return {k: v for k, v in raw.items() if not _NPZ_IGNORED.match(k)}


# What a file of each format is (named when it cannot be read).
EXPECTED = {
    'npz': 'a .npz of arrays named as the original ViT release, or a flax msgpack checkpoint',
    'timm': 'a timm state dict: torch.save zip, legacy torch file, .npz or .safetensors',
    'mae': "MAE's torch.save file with the state dict under 'model'",
    'mocov3': "MoCo v3's torch.save file with the state dict under 'state_dict'",
}
READERS: dict[str, Callable[[str, int], dict[str, np.ndarray]]] = {
    'npz': _load_npz,
    'timm': lambda path, heads: from_timm(_unwrap(state_dict.read(path), 'model', path), heads),
    'mae': lambda path, heads: from_timm(_unwrap(state_dict.read(path), 'model', path), heads),
    'mocov3': lambda path, heads: from_timm(
        _strip_prefixes(_unwrap(state_dict.read(path), 'state_dict', path)), heads),
}


def load(path: str, fmt: str, expected: Mapping[str, tuple[int, ...]], *, num_heads: int,
         posemb_resize: str = 'linear') -> dict[str, np.ndarray]:
  """Reads `path` in format `fmt` into our flat names, resizes the position embedding to the
  model's, and validates against `expected` {flat key: shape} (the backbone part of the model).
  Returns float32 arrays."""
  if fmt not in READERS:
    raise errors.CheckpointError(f'unknown checkpoint format {fmt!r}; known: {sorted(READERS)}')
  with errors.reading(path, fmt, EXPECTED[fmt]):
    params = READERS[fmt](path, num_heads)
  if POSEMB in params and POSEMB in expected:
    if np.shape(params[POSEMB])[1] != expected[POSEMB][1]:
      logging.info('%s: position embedding resized from %d to %d tokens (%s)', path,
                   np.shape(params[POSEMB])[1], expected[POSEMB][1], posemb_resize)
    params[POSEMB] = posemb_lib.resize_posemb(params[POSEMB], expected[POSEMB][1],
                                              method=posemb_resize)
  errors.validate(params, expected, source=f'{path} ({fmt})')
  return {k: np.asarray(v, np.float32) for k, v in params.items()}


def _registered_loader(fmt: str) -> checkpoints.Loader:
  def load_fn(path, expected, config):
    heads = expected['Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel'][1]
    return load(path, fmt, expected, num_heads=heads, posemb_resize=config.init.posemb_resize)
  return load_fn


for _fmt in READERS:
  checkpoints.register_format(_fmt)(_registered_loader(_fmt))
