"""Hostile weights files, per loader: one that tries to run code (its pickle calls `open` to write a
marker file), one with NaN, one truncated, one with a wrong shape. None runs code; each is refused
with one line (a CheckpointError) naming the file."""

import argparse
import io
import os
import pickle
import zipfile

import numpy as np
import pytest
from flax import serialization
from safetensors.numpy import save_file

from prompt_jax.checkpoints import clip as clip_ckpt
from prompt_jax.checkpoints import errors
from prompt_jax.checkpoints import safe_pickle
from prompt_jax.checkpoints import vit as vit_ckpt

torch = pytest.importorskip('torch')  # writes the torch formats

MHA = clip_ckpt.MHA
VIT = {'cls': (1, 1, 4), 'Transformer/encoder_norm/scale': (4,)}
TIMM = {'cls_token': (1, 1, 4), 'norm.weight': (4,)}
CLIP = {f'{t}/resblocks_0/{MHA}/{p}/kernel': (4, 1, 4) for t in ('visual', 'text')
        for p in ('query', 'key', 'value')} | {'visual/class_embedding': (4,)}
OPENAI = {'visual.transformer.resblocks.0.attn.in_proj_weight': (12, 4),
          'transformer.resblocks.0.attn.in_proj_weight': (12, 4), 'visual.class_embedding': (4,)}
HF_EXPECTED = {f'{t}/resblocks_0/{MHA}/query/kernel': (4, 1, 4) for t in ('visual', 'text')} | {
    'visual/class_embedding': (4,)}
HF = {'vision_model.encoder.layers.0.self_attn.q_proj.weight': (4, 4),
      'text_model.encoder.layers.0.self_attn.q_proj.weight': (4, 4),
      'vision_model.embeddings.class_embedding': (4,)}


class Evil:
  """Unpickled without an allow-list, it creates the file `marker` (a stand-in for any code)."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (open, (self.marker, 'w'))


def _torch(arrays):
  return {k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}


def _nested(flat):
  out = {}
  for k, v in flat.items():
    *parents, leaf = k.split('/')
    node = out
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = v
  return out


def _pickle_file(path, obj):
  with open(path, 'wb') as f:
    pickle.dump(obj, f, protocol=2)


def _npz(path, arrays, evil):
  if evil:  # a ".npz" that is really a pickle
    _pickle_file(path, {'evil': evil, **arrays})
  else:
    np.savez(path, **arrays)


def _safetensors(path, arrays, evil):
  if evil:  # a ".safetensors" that is really a pickle
    _pickle_file(path, {'evil': evil, **arrays})
  else:
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, path)


def _msgpack(path, arrays, evil):
  if evil:  # a "checkpoint_7" that is really a pickle
    _pickle_file(path, {'evil': evil, **arrays})
  else:
    with open(path, 'wb') as f:
      f.write(serialization.to_bytes({'params': _nested(arrays)}))


def _torch_save(wrap, legacy=False):
  def write(path, arrays, evil):
    obj = wrap(dict({'evil': evil} if evil else {}, **_torch(arrays)))
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
  return write


def _scripted(arrays):
  """A TorchScript module whose state dict is `arrays` (OPENAI's names)."""
  class Attn(torch.nn.Module):
    def __init__(self, w):
      super().__init__()
      self.in_proj_weight = torch.nn.Parameter(w)

    def forward(self, x):
      return x @ self.in_proj_weight

  class Tower(torch.nn.Module):
    def __init__(self, w):
      super().__init__()
      self.resblocks = torch.nn.ModuleList([torch.nn.Module()])
      self.resblocks[0].attn = Attn(w)

    def forward(self, x):
      return x

  class Visual(torch.nn.Module):
    def __init__(self):
      super().__init__()
      self.class_embedding = torch.nn.Parameter(arrays['visual.class_embedding'])
      self.transformer = Tower(arrays['visual.transformer.resblocks.0.attn.in_proj_weight'])

    def forward(self, x):
      return x + self.class_embedding

  class Top(torch.nn.Module):
    def __init__(self):
      super().__init__()
      self.visual = Visual()
      self.transformer = Tower(arrays['transformer.resblocks.0.attn.in_proj_weight'])

    def forward(self, x):
      return self.visual(x)

  return torch.jit.script(Top())


def _torchscript(path, arrays, evil):
  _scripted(_torch(arrays)).save(path)
  if evil:  # the archive's data.pkl replaced by one that calls `open`
    with zipfile.ZipFile(path) as zf:
      entries = {n: zf.read(n) for n in zf.namelist()}
    pkl = next(n for n in entries if n.endswith('/data.pkl'))
    entries[pkl] = pickle.dumps(evil, protocol=2)
    with zipfile.ZipFile(path, 'w') as zf:
      for n, data in entries.items():
        zf.writestr(n, data)


def _vit(fmt):
  return lambda path, expected: vit_ckpt.load(path, fmt, expected, num_heads=1)


def _clip(fmt):
  return lambda path, expected: clip_ckpt.load(path, fmt, expected)


# name: (file name, writer, names of its tensors {name: shape}, loader, model's expected shapes)
LOADERS = {
    'npz': ('ViT-B_16.npz', _npz, VIT, _vit('npz'), VIT),
    'torch_zip': ('vit.pth', _torch_save(lambda sd: sd), TIMM, _vit('timm'), VIT),
    'legacy_torch': ('vit_legacy.pth', _torch_save(lambda sd: sd, legacy=True), TIMM,
                     _vit('timm'), VIT),
    'safetensors': ('vit.safetensors', _safetensors, TIMM, _vit('timm'), VIT),
    'msgpack': ('checkpoint_7', _msgpack, {k: v for k, v in VIT.items()}, _vit('npz'), VIT),
    'torchscript': ('ViT-B-16.pt', _torchscript, OPENAI, _clip('clip_openai'), CLIP),
    'clip_openai': ('clip_sd.pt', _torch_save(lambda sd: sd), OPENAI, _clip('clip_openai'), CLIP),
    'mae': ('mae_pretrain_vit_base.pth', _torch_save(
        lambda sd: {'model': sd, 'args': argparse.Namespace(lr=1e-3), 'epoch': 3}), TIMM,
        _vit('mae'), VIT),
    'mocov3': ('linear-vit-b-300ep.pth.tar', _torch_save(
        lambda sd: {'state_dict': {f'module.base_encoder.{k}': v for k, v in sd.items()},
                    'epoch': 299}), TIMM, _vit('mocov3'), VIT),
    'hf_bin': ('pytorch_model.bin', _torch_save(lambda sd: sd), HF, _clip('clip_hf'), HF_EXPECTED),
}


def _arrays(names):
  rng = np.random.default_rng(0)
  return {k: rng.normal(size=s).astype(np.float32) for k, s in names.items()}


def _one_line_error(load, path, expected, match):
  with pytest.raises(errors.CheckpointError) as e:
    load(path, expected)
  msg = str(e.value)
  assert '\n' not in msg and str(path) in msg, msg
  assert match in msg, msg
  return msg


@pytest.mark.parametrize('loader', sorted(LOADERS))
def test_a_good_file_loads(tmp_path, loader):
  name, write, names, load, expected = LOADERS[loader]
  path = str(tmp_path / name)
  write(path, _arrays(names), None)
  got = load(path, expected)
  assert {k: v.shape for k, v in got.items()} == expected


@pytest.mark.parametrize('loader', sorted(LOADERS))
def test_a_file_that_runs_code_is_refused(tmp_path, loader):
  name, write, names, load, expected = LOADERS[loader]
  path, marker = str(tmp_path / name), str(tmp_path / 'PWNED')
  write(path, _arrays(names), Evil(marker))
  _one_line_error(load, path, expected, '')
  assert not os.path.exists(marker)


@pytest.mark.parametrize('loader', sorted(LOADERS))
def test_a_file_with_nan_is_refused_naming_the_tensor(tmp_path, loader):
  name, write, names, load, expected = LOADERS[loader]
  path = str(tmp_path / name)
  arrays = _arrays(names)
  first = sorted(arrays)[0]
  arrays[first] = np.full_like(arrays[first], np.nan)
  write(path, arrays, None)
  msg = _one_line_error(load, path, expected, 'holds NaN / inf values in ')
  assert "tensor(s): ['" in msg  # named


@pytest.mark.parametrize('loader', sorted(LOADERS))
def test_a_truncated_file_is_one_line(tmp_path, loader):
  name, write, names, load, expected = LOADERS[loader]
  path = str(tmp_path / name)
  write(path, _arrays(names), None)
  data = open(path, 'rb').read()
  with open(path, 'wb') as f:
    f.write(data[:len(data) * 2 // 3])
  _one_line_error(load, path, expected, '')


@pytest.mark.parametrize('loader', sorted(LOADERS))
def test_a_wrong_shape_is_one_line(tmp_path, loader):
  name, write, names, load, expected = LOADERS[loader]
  path = str(tmp_path / name)
  arrays = _arrays(names)
  last = sorted(arrays)[-1]
  arrays[last] = np.zeros((5,) + arrays[last].shape, np.float32)
  write(path, arrays, None)
  _one_line_error(load, path, expected, '')


def test_refusal_names_the_file_and_the_global(tmp_path):
  path, marker = str(tmp_path / 'vit.pth'), str(tmp_path / 'PWNED')
  _torch_save(lambda sd: sd)(path, _arrays(TIMM), Evil(marker))
  with pytest.raises(safe_pickle.UnsafePickleError,
                     match=f'^{path}: refused to unpickle the global (builtins|io)\\.open '):
    vit_ckpt.load(path, 'timm', VIT, num_heads=1)
  assert not os.path.exists(marker)


@pytest.mark.parametrize('loader', ['npz', 'torch_zip', 'legacy_torch', 'torchscript', 'mae'])
def test_the_hostile_files_do_run_code_when_unpickled_unsafely(tmp_path, loader):
  """The control: each hostile file writes its marker through an unrestricted unpickler."""
  name, write, names, _, _ = LOADERS[loader]
  path, marker = str(tmp_path / name), str(tmp_path / 'PWNED')
  write(path, _arrays(names), Evil(marker))
  if zipfile.is_zipfile(path):
    with zipfile.ZipFile(path) as zf:
      data = zf.read(next(n for n in zf.namelist() if n.endswith('/data.pkl')))
    unpickler = pickle.Unpickler(io.BytesIO(data))
    unpickler.persistent_load = lambda pid: None
    try:
      unpickler.load()
    except Exception:  # the tensors fail to rebuild after the marker is written
      pass
  elif loader == 'legacy_torch':
    torch.load(path, weights_only=False)
  else:
    with open(path, 'rb') as f:
      pickle.load(f)
  assert os.path.exists(marker)
