"""util.treeio: every method's prepared values round-trip through one npz, without pickle."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from prompt_jax.util import treeio

RNG = np.random.default_rng(0)
PREPARED = {  # the shapes and types each method's prepare() returns
    'ship': {'anchors': (0, 4, 9), 'bank': RNG.normal(size=(8, 4)).astype(np.float32),
             'affinity': RNG.normal(size=(12, 12))},
    'davpt': {'num_proxies': 3, 'class_map': np.array([0, 2, 1, 1], np.int32),
              'centroids': RNG.normal(size=(3, 4)).astype(np.float32)},
    'spt': {'prompt/prompts': RNG.normal(size=(4, 2, 4)).astype(np.float32)},
    'sap': {'classnames': ['cat', 'dog'], 'num_classes': 2, 'texts': ['a cat, furry.', 'a dog.'],
            'ids': np.arange(12, dtype=np.int32).reshape(2, 6),
            'owner': np.array([0, 1], np.int32),
            'desc_feats': RNG.normal(size=(2, 5)).astype(np.float32),
            'zs_text': RNG.normal(size=(2, 5)).astype(np.float32),
            'ctx_ids': np.array([320, 1125], np.int32)},
    'none': None,
}


def _assert_same(a, b):
  assert type(a) is type(b), (type(a), type(b))
  if isinstance(a, dict):
    assert list(a) == list(b)
    for k in a:
      _assert_same(a[k], b[k])
  elif isinstance(a, (list, tuple)):
    assert len(a) == len(b)
    for x, y in zip(a, b):
      _assert_same(x, y)
  elif isinstance(a, (np.ndarray, np.generic)):
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)
  else:
    assert a == b


@pytest.mark.parametrize('name', sorted(PREPARED))
def test_prepared_values_round_trip_exactly(tmp_path, name):
  path = str(tmp_path / 'prepared.npz')
  treeio.save(path, PREPARED[name])
  _assert_same(PREPARED[name], treeio.load(path))
  with np.load(path, allow_pickle=False) as z:  # every entry reads without pickle
    assert '__tree__' in z.files
    assert all(z[k].dtype != object for k in z.files)


def test_scalars_tuples_and_jax_arrays():
  value = {'i': np.int64(3), 'f': np.float32(0.5), 'nan': float('nan'), 't': ((1, 2), [3]),
           'j': jnp.ones((2,), jnp.float32), 'b': True, 's': 'x', 'n': None}
  got = treeio.loads(treeio.dumps(value))
  assert got['i'] == 3 and got['i'].dtype == np.int64 and got['f'].dtype == np.float32
  assert np.isnan(got['nan']) and got['t'] == ((1, 2), [3]) and isinstance(got['t'][0], tuple)
  assert isinstance(got['j'], np.ndarray) and got['j'].tolist() == [1.0, 1.0]
  assert (got['b'], got['s'], got['n']) == (True, 'x', None)


def test_objects_and_odd_keys_are_refused():
  with pytest.raises(TypeError, match='object array'):
    treeio.dumps({'x': np.array([{'a': 1}], dtype=object)})
  with pytest.raises(TypeError, match='object array'):
    treeio.dumps({'x': object()})
  with pytest.raises(TypeError, match='must be a str'):
    treeio.dumps({1: 2})
  with pytest.raises(TypeError, match='must be a str'):
    treeio.dumps({'__array__': 'a0'})


def test_structure_is_plain_json(tmp_path):
  path = str(tmp_path / 'p.npz')
  treeio.save(path, PREPARED['ship'])
  with np.load(path, allow_pickle=False) as z:
    structure = json.loads(str(z['__tree__']))
  assert structure['anchors'] == {'__tuple__': [0, 4, 9]}
  assert structure['bank'] == {'__array__': 'a0'}
