"""The original Flax ViT's own training checkpoints: google-research/vision_transformer
vit_jax/train.py saves `flax_checkpoints.save_checkpoint(workdir, (params, opt_state, step), step)`,
a msgpack file `checkpoint_<step>` of {'0': params, '1': opt_state, '2': step}."""

import jax
import numpy as np
import optax
import pytest
from flax import serialization

from mocked import micro_params
from prompt_jax.checkpoints import errors
from prompt_jax.checkpoints import vit as vit_ckpt


def _nested(flat):
  out = {}
  for k, v in flat.items():
    *parents, leaf = k.split('/')
    node = out
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = v
  return out


def test_vit_jax_train_checkpoint_loads_its_params(tmp_path):
  flat = micro_params()
  expected = {k: v.shape for k, v in flat.items()}
  heads = flat['Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel'].shape[1]
  with_head = dict(flat, **{'head/kernel': np.ones((64, 10), np.float32),
                            'head/bias': np.zeros(10, np.float32)})
  params = jax.tree_util.tree_map(np.asarray, _nested(with_head))
  opt_state = optax.sgd(0.1, momentum=0.9).init(params)
  path = tmp_path / 'checkpoint_5'
  path.write_bytes(serialization.to_bytes((params, opt_state, 5)))
  got = vit_ckpt.load(str(path), 'npz', expected, num_heads=heads)  # detected
  assert set(got) == set(flat)
  for k in flat:
    np.testing.assert_array_equal(got[k], flat[k], err_msg=k)


def test_other_msgpack_is_named_with_how_to_convert(tmp_path):
  path = tmp_path / 'checkpoint_1'
  path.write_bytes(serialization.to_bytes({'encoder': {'w': np.zeros(3, np.float32)},
                                           'step': 1}))
  with pytest.raises(errors.CheckpointError, match='flax msgpack checkpoint .* Convert it'):
    vit_ckpt.load(str(path), 'npz', {'cls': (1, 1, 4)}, num_heads=1)


@pytest.mark.parametrize('layout', ['optim_target', 'train_state'])
def test_older_and_train_state_layouts_load_their_params(tmp_path, layout):
  flat = micro_params()
  expected = {k: v.shape for k, v in flat.items()}
  heads = flat['Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel'].shape[1]
  params = jax.tree_util.tree_map(np.asarray, _nested(flat))
  momentum = jax.tree_util.tree_map(np.zeros_like, params)
  if layout == 'optim_target':  # flax.optim.Optimizer's state_dict
    state = {'target': params, 'state': {'step': 7, 'param_states': momentum}}
  else:  # flax.training.train_state.TrainState's state_dict
    state = {'step': 7, 'params': {'params': params},
             'opt_state': optax.sgd(0.1, momentum=0.9).init(params)}
  path = tmp_path / 'checkpoint_7'
  path.write_bytes(serialization.to_bytes(state))
  got = vit_ckpt.load(str(path), 'npz', expected, num_heads=heads)
  assert set(got) == set(flat)
  for k in flat:
    np.testing.assert_array_equal(got[k], flat[k], err_msg=k)
