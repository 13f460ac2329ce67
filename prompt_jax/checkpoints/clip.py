"""CLIP checkpoints -> our flat '/'-joined params (prompt_jax/models/clip.py).

Formats (`config.init.format`):
  clip_openai  OpenAI's release (`ViT-B-16.pt`, a TorchScript archive: its data.pkl read through
               `safe_pickle`'s allow-list, never run, no torch needed), or the same state dict
               saved plainly (`.npz`, or a `torch.save` state dict). Keys: `visual.conv1.weight`,
               `visual.transformer.resblocks.{i}.attn.in_proj_weight` (fused q/k/v), ...
  clip_hf      Hugging Face `openai/clip-vit-base-patch16` layout from `.safetensors` or
               `pytorch_model.bin` (a file, or a directory holding one), read without torch.
PyTorch Linear weights are [out, in]; ours are [in, out] with attention kernels split per head:
q/k/v [D, H, Dh], out [H, Dh, D]. Weights are cast to float32. Every load is validated: missing,
unexpected (by their checkpoint names) and mis-shaped keys are named in the error.
"""

from __future__ import annotations

import os
import re
from typing import Any
from collections.abc import Callable, Mapping

from absl import logging
import numpy as np

from prompt_jax import checkpoints
from prompt_jax.checkpoints import errors
from prompt_jax.checkpoints import posemb as posemb_lib
from prompt_jax.checkpoints import state_dict

MHA = 'MultiHeadDotProductAttention_1'
# Non-weight entries of OpenAI's state dict (its own build_model deletes them), HF buffers.
_IGNORED = re.compile(r'^(input_resolution|context_length|vocab_size)$|position_ids$')


def _ln(prefix: str, kind: str, w: np.ndarray) -> dict[str, np.ndarray]:
  return {f'{prefix}/{"scale" if kind == "weight" else "bias"}': w}


def _dense(prefix: str, kind: str, w: np.ndarray) -> dict[str, np.ndarray]:
  return {f'{prefix}/{"kernel" if kind == "weight" else "bias"}': w.T if kind == 'weight' else w}


def _qkv(prefix: str, kind: str, w: np.ndarray, heads: int) -> dict[str, np.ndarray]:
  """One of q/k/v: weight [D, D] (out, in) -> kernel [D, H, Dh]; bias [D] -> [H, Dh]."""
  d = w.shape[0]
  if kind == 'weight':
    return {f'{prefix}/kernel': w.T.reshape(w.shape[1], heads, d // heads)}
  return {f'{prefix}/bias': w.reshape(heads, d // heads)}


def _out(prefix: str, kind: str, w: np.ndarray, heads: int) -> dict[str, np.ndarray]:
  """out_proj weight [D, D] (out, in) -> kernel [H, Dh, D]; bias [D]."""
  if kind == 'weight':
    d = w.shape[1]
    return {f'{prefix}/kernel': w.T.reshape(heads, d // heads, w.shape[0])}
  return {f'{prefix}/bias': w}


def _conv(w: np.ndarray) -> np.ndarray:
  """[O, I, kh, kw] -> HWIO."""
  return w.transpose(2, 3, 1, 0)


def _heads(expected: Mapping[str, tuple[int, ...]], tower: str) -> int:
  return expected[f'{tower}/resblocks_0/{MHA}/query/kernel'][1]


# ------------------------------------------------------------------- OpenAI layout


def _openai_block(tower: str, i: int, name: str, w: np.ndarray, heads: int
                  ) -> dict[str, np.ndarray]:
  blk = f'{tower}/resblocks_{i}'
  mod, _, kind = name.rpartition('.')
  if mod in ('ln_1', 'ln_2'):
    return _ln(f'{blk}/LayerNorm_{0 if mod == "ln_1" else 2}', kind, w)
  if name in ('attn.in_proj_weight', 'attn.in_proj_bias'):
    k = 'weight' if name.endswith('weight') else 'bias'
    out = {}
    for part, chunk in zip(('query', 'key', 'value'), np.split(w, 3, axis=0)):
      out.update(_qkv(f'{blk}/{MHA}/{part}', k, chunk, heads))
    return out
  if mod == 'attn.out_proj':
    return _out(f'{blk}/{MHA}/out', kind, w, heads)
  if mod in ('mlp.c_fc', 'mlp.c_proj'):
    return _dense(f'{blk}/MlpBlock_3/Dense_{0 if mod == "mlp.c_fc" else 1}', kind, w)
  return {}


def convert_openai(sd: Mapping[str, np.ndarray], expected: Mapping[str, tuple[int, ...]]
                   ) -> dict[str, np.ndarray]:
  """OpenAI CLIP state dict -> our flat params (unknown keys kept under their own names)."""
  heads = {t: _heads(expected, t) for t in ('visual', 'text')}
  direct = {
      'visual.class_embedding': 'visual/class_embedding',
      'visual.positional_embedding': 'visual/positional_embedding',
      'visual.proj': 'visual/proj',
      'token_embedding.weight': 'text/token_embedding/embedding',
      'positional_embedding': 'text/positional_embedding',
      'text_projection': 'text/text_projection',
      'logit_scale': 'logit_scale',
  }
  lns = {'visual.ln_pre': 'visual/ln_pre', 'visual.ln_post': 'visual/ln_post',
         'ln_final': 'text/ln_final'}
  out: dict[str, np.ndarray] = {}
  for key, w in sd.items():
    if _IGNORED.search(key):
      continue
    w = np.asarray(w, np.float32)
    m = re.match(r'^(visual\.)?transformer\.resblocks\.(\d+)\.(.+)$', key)
    mod, _, kind = key.rpartition('.')
    got: dict[str, np.ndarray] = {}
    if key in direct:
      got = {direct[key]: w}
    elif key == 'visual.conv1.weight':
      got = {'visual/conv1/kernel': _conv(w)}
    elif mod in lns:
      got = _ln(lns[mod], kind, w)
    elif m:
      tower = 'visual' if m.group(1) else 'text'
      got = _openai_block(tower, int(m.group(2)), m.group(3), w, heads[tower])
    out.update(got or {key: w})
  return out


# ------------------------------------------------------------------- Hugging Face layout


def _hf_block(tower: str, i: int, name: str, w: np.ndarray, heads: int) -> dict[str, np.ndarray]:
  blk = f'{tower}/resblocks_{i}'
  mod, _, kind = name.rpartition('.')
  if mod in ('layer_norm1', 'layer_norm2'):
    return _ln(f'{blk}/LayerNorm_{0 if mod == "layer_norm1" else 2}', kind, w)
  parts = {'self_attn.q_proj': 'query', 'self_attn.k_proj': 'key', 'self_attn.v_proj': 'value'}
  if mod in parts:
    return _qkv(f'{blk}/{MHA}/{parts[mod]}', kind, w, heads)
  if mod == 'self_attn.out_proj':
    return _out(f'{blk}/{MHA}/out', kind, w, heads)
  if mod in ('mlp.fc1', 'mlp.fc2'):
    return _dense(f'{blk}/MlpBlock_3/Dense_{0 if mod == "mlp.fc1" else 1}', kind, w)
  return {}


def convert_hf(sd: Mapping[str, np.ndarray], expected: Mapping[str, tuple[int, ...]]
               ) -> dict[str, np.ndarray]:
  """Hugging Face CLIPModel state dict -> our flat params (unknown keys kept as they are)."""
  heads = {t: _heads(expected, t) for t in ('visual', 'text')}
  direct = {
      'vision_model.embeddings.class_embedding': ('visual/class_embedding', None),
      'vision_model.embeddings.position_embedding.weight': ('visual/positional_embedding', None),
      'vision_model.embeddings.patch_embedding.weight': ('visual/conv1/kernel', _conv),
      'visual_projection.weight': ('visual/proj', np.transpose),
      'text_model.embeddings.token_embedding.weight': ('text/token_embedding/embedding', None),
      'text_model.embeddings.position_embedding.weight': ('text/positional_embedding', None),
      'text_projection.weight': ('text/text_projection', np.transpose),
      'logit_scale': ('logit_scale', None),
  }
  lns = {'vision_model.pre_layrnorm': 'visual/ln_pre', 'vision_model.post_layernorm':
         'visual/ln_post', 'text_model.final_layer_norm': 'text/ln_final'}
  out: dict[str, np.ndarray] = {}
  for key, w in sd.items():
    if _IGNORED.search(key):
      continue
    w = np.asarray(w, np.float32)
    mod, _, kind = key.rpartition('.')
    m = re.match(r'^(vision|text)_model\.encoder\.layers\.(\d+)\.(.+)$', key)
    got: dict[str, np.ndarray] = {}
    if key in direct:
      name, fn = direct[key]
      got = {name: fn(w) if fn is not None else w}
    elif mod in lns:
      got = _ln(lns[mod], kind, w)
    elif m:
      tower = 'visual' if m.group(1) == 'vision' else 'text'
      got = _hf_block(tower, int(m.group(2)), m.group(3), w, heads[tower])
    out.update(got or {key: w})
  return out


# ------------------------------------------------------------------- reading files


def read_openai(path: str) -> dict[str, np.ndarray]:
  """OpenAI release (a TorchScript archive: its state dict, read through the allow-list without
  torch) or a plain state dict (.npz / torch.save)."""
  obj = state_dict.read(path)
  if isinstance(obj, Mapping) and 'state_dict' in obj and isinstance(obj['state_dict'], Mapping):
    obj = obj['state_dict']
  return dict(obj)


def read_hf(path: str) -> dict[str, np.ndarray]:
  """HF safetensors file or pytorch_model.bin (read through `safe_pickle`'s allow-list), or a
  directory holding either (model.safetensors first); torch-free."""
  if os.path.isdir(path):
    st = os.path.join(path, 'model.safetensors')
    path = st if os.path.exists(st) else os.path.join(path, 'pytorch_model.bin')
  if not os.path.exists(path):
    raise FileNotFoundError(f'checkpoint file not found: {path}')
  if path.endswith('.bin'):
    return dict(state_dict.read(path))
  from safetensors.numpy import load_file
  return load_file(path)


def _resize_posemb(flat: dict[str, np.ndarray], expected: Mapping[str, tuple[int, ...]],
                   method: str) -> None:
  key = 'visual/positional_embedding'
  if key in flat and key in expected and flat[key].shape != tuple(expected[key]):
    logging.info('position embedding resized from %d to %d tokens (%s)', flat[key].shape[0],
                 expected[key][0], method)
    flat[key] = posemb_lib.resize_posemb(flat[key][None], expected[key][0], method=method)[0]


EXPECTED = {
    'clip_openai': "OpenAI's TorchScript archive (ViT-B-16.pt), or its state dict as .npz / "
                   'torch.save',
    'clip_hf': 'a Hugging Face CLIPModel .safetensors / pytorch_model.bin file (or a directory '
               'holding one)',
}


def load(path: str, fmt: str, expected: Mapping[str, tuple[int, ...]], *,
         posemb_resize: str = 'linear') -> dict[str, np.ndarray]:
  """Reads, converts and validates a CLIP checkpoint (`fmt` 'clip_openai' or 'clip_hf')."""
  readers: dict[str, tuple[Callable[[str], Any], Callable[..., Any]]] = {
      'clip_openai': (read_openai, convert_openai), 'clip_hf': (read_hf, convert_hf)}
  if fmt not in readers:
    raise errors.CheckpointError(f'unknown CLIP format {fmt!r}; known: {sorted(readers)}')
  read, convert = readers[fmt]
  with errors.reading(path, fmt, EXPECTED[fmt]):
    sd = read(path)
  try:
    flat = convert(sd, expected)
  except (ValueError, KeyError) as e:  # a tensor that cannot be split / reshaped as the model's
    raise errors.CheckpointError(
        f'checkpoint {path} ({fmt}) does not fit the model: {type(e).__name__}: {e}; check '
        'config.model.variant / config.init.format') from None
  if posemb_resize:
    _resize_posemb(flat, expected, posemb_resize)
  errors.validate(flat, expected, source=f'{path} ({fmt})')
  return flat


def _loader(fmt: str):
  def fn(path, expected, config):
    return load(path, fmt, expected, posemb_resize=config.init.posemb_resize)
  return fn


for _fmt in ('clip_openai', 'clip_hf'):
  checkpoints.register_format(_fmt)(_loader(_fmt))
