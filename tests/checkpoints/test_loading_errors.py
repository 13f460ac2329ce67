import sys

import numpy as np
import pytest

from prompt_jax.checkpoints import errors
from prompt_jax.checkpoints import posemb
from prompt_jax.checkpoints import state_dict
from prompt_jax.checkpoints import vit as vit_ckpt

EXPECTED = {'cls': (1, 1, 4), 'embedding/kernel': (2, 2, 3, 4),
            'Transformer/posembed_input/pos_embedding': (1, 5, 4)}


def _good():
  return {k: np.zeros(s, np.float32) for k, s in EXPECTED.items()}


def test_missing_extra_and_misshaped_keys_are_named(tmp_path):
  flat = _good()
  del flat['cls']
  flat['Transformer/bogus'] = np.zeros(3, np.float32)
  flat['embedding/kernel'] = np.zeros((3, 3, 3, 4), np.float32)
  flat['head/kernel'] = np.zeros((4, 10), np.float32)  # dropped: a new head is always trained
  path = str(tmp_path / 'bad.npz')
  np.savez(path, **flat)
  with pytest.raises(errors.CheckpointError) as e:
    vit_ckpt.load(path, 'npz', EXPECTED, num_heads=1)
  msg = str(e.value)
  assert 'missing 1 key(s): cls' in msg
  assert 'unexpected 1 key(s): Transformer/bogus' in msg
  assert 'embedding/kernel (checkpoint (3, 3, 3, 4), model (2, 2, 3, 4))' in msg
  assert 'head/kernel' not in msg and '\n' not in msg


def test_corrupted_and_missing_files_give_clear_errors(tmp_path):
  path = str(tmp_path / 'corrupt.npz')
  with open(path, 'wb') as f:
    f.write(b'not a zip at all')
  with pytest.raises(errors.CheckpointError, match='cannot read checkpoint'):
    vit_ckpt.load(path, 'npz', EXPECTED, num_heads=1)
  with pytest.raises(FileNotFoundError, match='not found'):
    vit_ckpt.load(str(tmp_path / 'nope.npz'), 'npz', EXPECTED, num_heads=1)
  with pytest.raises(errors.CheckpointError, match='unknown checkpoint format'):
    vit_ckpt.load(path, 'caffe', EXPECTED, num_heads=1)


def test_posemb_is_resized_to_the_model_grid(tmp_path, caplog):
  caplog.set_level('INFO')
  flat = _good()
  flat['Transformer/posembed_input/pos_embedding'] = np.random.rand(1, 17, 4).astype(np.float32)
  path = str(tmp_path / 'ok.npz')
  np.savez(path, **flat)
  got = vit_ckpt.load(path, 'npz', EXPECTED, num_heads=1)
  pe = got['Transformer/posembed_input/pos_embedding']
  assert pe.shape == (1, 5, 4)
  np.testing.assert_array_equal(pe[0, 0], flat['Transformer/posembed_input/pos_embedding'][0, 0])
  assert 'position embedding resized from 17 to 5 tokens (linear)' in caplog.text


def test_posemb_resize_constant_grid_stays_constant():
  pe = np.concatenate([np.full((1, 1, 2), 7.0), np.ones((1, 16, 2))], axis=1)
  for method in ('linear', 'bicubic'):
    out = posemb.resize_posemb(pe, 1 + 36, method=method)
    assert out.shape == (1, 37, 2)
    np.testing.assert_allclose(out[0, 1:], 1.0, atol=1e-5)
    assert out[0, 0, 0] == 7.0


def test_torch_zip_is_read_without_torch(tmp_path, monkeypatch):
  torch = pytest.importorskip('torch')
  sd = {'a': torch.arange(6, dtype=torch.float32).reshape(2, 3).t(),  # non-contiguous
        'b': torch.tensor([1, 2], dtype=torch.int64), 'c': torch.ones(2, dtype=torch.float16)}
  path = str(tmp_path / 'x.pth')
  torch.save({'model': sd, 'epoch': 3}, path)
  monkeypatch.setitem(sys.modules, 'torch', None)  # any import of torch now fails
  got = state_dict.read(path)
  np.testing.assert_array_equal(got['model']['a'], np.arange(6, dtype=np.float32).reshape(2, 3).T)
  assert got['model']['b'].dtype == np.int64 and got['model']['c'].dtype == np.float16
  assert got['epoch'] == 3


def test_legacy_torch_file_reads_without_torch(tmp_path, monkeypatch):
  torch = pytest.importorskip('torch')
  path = str(tmp_path / 'legacy.pth')
  a = torch.arange(6.).reshape(2, 3)[:, 1:]  # a strided view into a bigger storage
  torch.save({'a': a, 'b': torch.ones(3, dtype=torch.float16)}, path,
             _use_new_zipfile_serialization=False)
  monkeypatch.setitem(sys.modules, 'torch', None)  # any import of torch now fails
  got = state_dict.read(path)
  np.testing.assert_array_equal(got['a'], a.numpy())
  assert got['b'].dtype == np.float16 and got['b'].tolist() == [1, 1, 1]


def _damaged(tmp_path, name: str, data: bytes, how: str) -> str:
  path = tmp_path / f'{how}_{name}'
  if how == 'truncated':
    data = data[:len(data) // 2]
  else:  # one flipped byte inside the second stored array
    data = bytearray(data)
    data[data.index(b'\x93NUMPY', 200) + 1000] ^= 0xFF
  path.write_bytes(bytes(data))
  return str(path)


@pytest.mark.parametrize('how', ['truncated', 'flipped'])
def test_damaged_npz_is_a_checkpoint_error_naming_path_and_format(tmp_path, how):
  good = tmp_path / 'good.npz'
  np.savez(good, x=np.zeros(4000, np.float32), y=np.zeros(4000, np.float32))
  path = _damaged(tmp_path, 'ViT.npz', good.read_bytes(), how)
  with pytest.raises(errors.CheckpointError) as e:
    vit_ckpt.load(path, 'npz', EXPECTED, num_heads=1)
  assert f'cannot read checkpoint {path} as format \'npz\'' in str(e.value)
  assert 'BadZipFile' in str(e.value) and 'truncated or corrupted' in str(e.value)


def test_damaged_torch_files_are_checkpoint_errors(tmp_path):
  torch = pytest.importorskip('torch')
  path = str(tmp_path / 'mae.pth')
  torch.save({'model': {'cls_token': torch.zeros(1, 1, 4), 'x': torch.zeros(4000)}}, path)
  data = open(path, 'rb').read()
  with open(path, 'wb') as f:
    f.write(data[:len(data) - 100])
  with pytest.raises(errors.CheckpointError, match=f"{path} as format 'mae' .*state dict under"):
    vit_ckpt.load(path, 'mae', EXPECTED, num_heads=1)
  legacy = str(tmp_path / 'legacy.pth')  # torch is installed: its unpickler fails
  with open(legacy, 'wb') as f:
    f.write(b'\x80\x02legacy pickle')
  with pytest.raises(errors.CheckpointError, match="legacy.pth as format 'timm'.*Unpickling"):
    vit_ckpt.load(legacy, 'timm', EXPECTED, num_heads=1)


def test_damaged_torchscript_and_safetensors_are_checkpoint_errors(tmp_path):
  torch = pytest.importorskip('torch')
  from prompt_jax.checkpoints import clip as clip_ckpt
  path = str(tmp_path / 'ViT-B-16.pt')
  torch.jit.save(torch.jit.script(torch.nn.Linear(64, 64)), path)
  data = open(path, 'rb').read()
  with open(path, 'wb') as f:
    f.write(data[:len(data) // 2])
  with pytest.raises(errors.CheckpointError, match="ViT-B-16.pt as format 'clip_openai'"):
    clip_ckpt.load(path, 'clip_openai', EXPECTED)
  bad = tmp_path / 'model.safetensors'
  bad.write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"a": garbage}')
  with pytest.raises(errors.CheckpointError, match="model.safetensors as format 'clip_hf'"):
    clip_ckpt.load(str(bad), 'clip_hf', EXPECTED)


def test_nonfinite_backbone_weights_are_refused(tmp_path):
  from helpers import micro_config
  from prompt_jax.checkpoints import backbone
  from prompt_jax.methods import base
  cfg = micro_config('vpt')
  params = backbone.load(base.get('vpt'), cfg)  # the seeded random init ('random')
  flat = {k: np.asarray(v) for k, v in backbone.tree.flat(params).items()}
  flat['Transformer/encoder_norm/scale'] = flat['Transformer/encoder_norm/scale'].copy()
  flat['Transformer/encoder_norm/scale'][3] = np.inf
  path = str(tmp_path / 'inf.npz')
  np.savez(path, **flat)
  cfg.unlock()
  cfg.init.checkpoint = path
  with pytest.raises(errors.CheckpointError, match='NaN / inf values in 1 tensor.*encoder_norm'):
    backbone.load(base.get('vpt'), cfg)
