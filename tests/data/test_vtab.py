"""VTAB-1k on mocked TFDS: split strings, labels, shapes, label transforms, group means."""

import functools

import ml_collections
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from tensorflow_datasets.testing import mocking

from prompt_jax.data import registry
from prompt_jax.data import tasks
from prompt_jax.data import vtab
from tests import mocked as mocked_lib

# A plausible TFDS train size per dataset, so nX slices are known answers.
TRAIN_SIZE = 10000
EXPECTED = {  # (val200, test) for TRAIN_SIZE = 10000
    'caltech101': ('train[9000:9200]', 'test'), 'cifar100': ('train[9000:9200]', 'test'),
    'dtd': ('validation[:200]', 'test'), 'oxford_flowers102': ('validation[:200]', 'test'),
    'oxford_iiit_pet': ('train[8000:8200]', 'test'), 'svhn': ('train[9000:9200]', 'test'),
    'sun397': ('validation[:200]', 'test'), 'patch_camelyon': ('validation[:200]', 'test'),
    'eurosat': ('train[6000:6200]', 'train[8000:]'),
    'resisc45': ('train[6000:6200]', 'train[8000:]'),
    'diabetic_retinopathy': ('validation[:200]', 'test'), 'dmlab': ('validation[:200]', 'test'),
    'kitti': ('validation[:200]', 'test'), 'clevr_count': ('train[9000:9200]', 'validation'),
    'clevr_dist': ('train[9000:9200]', 'validation'),
    'dsprites_loc': ('train[8000:8200]', 'train[9000:]'),
    'dsprites_ori': ('train[8000:8200]', 'train[9000:]'),
    'smallnorb_azi': ('test[:200]', 'test[50%:]'), 'smallnorb_ele': ('test[:200]', 'test[50%:]'),
}


def _cfg(task, **kw):
  c = ml_collections.ConfigDict(dict(source='vtab', task=task, data_dir=None, image_size=16,
                                     resize='bilinear', crop_pct=1.0,
                                     normalization='minus_one_to_one', train_split='train800val200',
                                     eval_splits=('val200', 'test'), augment=False,
                                     sampler='shuffle', images_per_class=2, cache_train=True))
  c.update(kw)
  return c


@pytest.fixture
def mocked(monkeypatch):
  requested = []
  real = vtab.as_dataset

  def record(builder, split):
    requested.append((builder.info.full_name, split))
    return real(builder, split)

  monkeypatch.setattr(vtab, 'as_dataset', record)
  monkeypatch.setattr(vtab, 'base_split_sizes',
                      lambda b: {'train': TRAIN_SIZE, 'validation': 500, 'test': 600})
  # Fixed length 10 for every dynamic dim: object lists stay consistent across fields (kitti) and
  # CLEVR gets 10 objects (as real scenes: 3-10), instead of independent random lengths 5-50.
  # vtab.as_dataset passes image decoders, so the mock encodes its examples and decodes them with
  # ours (EncodedRandomFakeGenerator).
  for name in ('RandomFakeGenerator', 'EncodedRandomFakeGenerator'):
    monkeypatch.setattr(mocking, name, functools.partial(getattr(mocking, name),
                                                         constant_dynamic_shape=True))
  with tfds.testing.mock_data(num_examples=3, num_sub_examples=5,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    yield requested


def test_all_19_tasks_registered():
  assert len(vtab.TASKS) == 19
  assert sorted(t for g in tasks.GROUPS.values() for t in g) == sorted(vtab.TASKS)




@pytest.mark.parametrize('task', sorted(EXPECTED))
def test_task_on_mock_data(mocked, task, monkeypatch):
  # The mock cannot encode these datasets' random boxes / object lists (tests/mocked.py).
  if vtab.TASKS[task].tfds_name.split(':')[0].split('/')[0] in mocked_lib.MOCK_CANNOT_ENCODE:
    monkeypatch.setattr(vtab, 'DECODERS', None)
  src = registry.get_source(_cfg(task))
  val, test = EXPECTED[task]
  assert src.split_strings == {'train800': 'train[:800]', 'val200': val,
                               'train800val200': f'train[:800]+{val}',
                               'train1000': 'train[:1000]', 'test': test}
  assert src.splits['train800'] == 800 and src.splits['val200'] == 200
  assert src.splits['train800val200'] == 1000 and src.splits['train1000'] == 1000
  batches = list(src.iterate('test', 4))  # mock yields 3 examples: one padded batch
  assert len(batches) == 1
  b = batches[0]
  assert b['image'].shape == (4, 16, 16, 3) and b['image'].dtype == np.float32
  assert b['label'].dtype == np.int32 and b['mask'].tolist() == [True] * 3 + [False]
  assert -1.0 <= b['image'].min() and b['image'].max() <= 1.0
  labels = b['label'][b['mask']]
  assert ((0 <= labels) & (labels < src.num_classes)).all(), labels
  if task == 'clevr_count':
    assert (labels == 10 - 3).all()
  assert mocked[-1][1] == test and mocked[-1][0].startswith(
      vtab.TASKS[task].tfds_name.split(':')[0])
  train = list(src.iterate('train800val200', 2, shuffle_seed=0))  # mock: 3 examples per read
  assert mocked[-1][1] == f'train[:800]+{val}' and len(train) == 2


def test_percent_slices_integer_division():
  t = vtab.TASKS['eurosat']
  s = t.split_strings(27000)  # real eurosat/rgb train size
  assert s['val200'] == 'train[16200:16400]' and s['test'] == 'train[21600:]'
  s = vtab.TASKS['oxford_iiit_pet'].split_strings(3680)
  assert s['val200'] == 'train[2944:3144]'
  s = vtab.TASKS['caltech101'].split_strings(3059)  # 3059 * 90 // 100 = 2753 (not 2753.1 rounded)
  assert s['val200'] == 'train[2753:2953]'
  assert vtab.split_size('test[50%:]', {'test': 24300}) == 12150
  assert vtab.split_size('train[:800]+validation[:200]', {'train': 900, 'validation': 300}) == 1000


def test_missing_data_names_dataset_and_command(tmp_path):
  with pytest.raises(vtab.DatasetNotFoundError) as e:
    registry.get_source(_cfg('cifar100', data_dir=str(tmp_path)))
  msg = str(e.value)
  assert 'cifar100:3.*.*' in msg and str(tmp_path) in msg
  assert f'python -m prompt_jax.data.prepare --tasks=cifar100 --data_dir={tmp_path}' in msg


def _objects(**kw):
  return {k: tf.constant(v) for k, v in kw.items()}


def test_clevr_labels():
  objs = _objects(size=[0, 1, 0, 1, 0], pixel_coords=[[1., 2., 12.], [3., 4., 9.2], [0, 0, 11.],
                                                      [0, 0, 50.], [0, 0, 10.5]])
  assert int(vtab.label_clevr_count({'objects': objs})) == 2
  def dist(d):
    objs = _objects(pixel_coords=[[0., 0., d], [0, 0, 99.]])
    return int(vtab.label_clevr_dist({'objects': objs}))
  # thresholds [0, 8, 8.5, 9, 9.5, 10, 100]: label = largest i with thr[i] < d.
  assert [dist(d) for d in (0.5, 8.0, 8.01, 8.5, 9.2, 9.5, 9.6, 10.0, 10.01, 99.)] == [
      0, 0, 1, 1, 3, 3, 4, 4, 5, 5]
  assert dist(9.2) == 3


def test_kitti_labels():
  def lab(types, zs):
    loc = [[0., 0., z] for z in zs] if zs else np.zeros((0, 3), np.float32)
    return int(vtab.label_kitti_dist({'objects': _objects(type=np.array(types, np.int64),
                                                          location=np.array(loc, np.float32))}))
  assert lab([0], [5.0]) == 0
  assert lab([0], [8.0]) == 0 and lab([1], [8.01]) == 1
  assert lab([2], [20.0]) == 1 and lab([2], [20.5]) == 2
  assert lab([0, 3], [30.0, 2.0]) == 2  # type 3 (pedestrian) is not a vehicle
  assert lab([4, 5], [1.0, 2.0]) == 3  # no vehicle -> distance 1000
  assert lab([], []) == 3


def test_dsprites_and_smallnorb_labels():
  loc = [int(vtab.label_dsprites_loc({'label_x_position': v})) for v in (0, 1, 2, 3, 30, 31)]
  assert loc == [0, 0, 1, 1, 15, 15]
  ori = [int(vtab.label_dsprites_ori({'label_orientation': v})) for v in (0, 2, 3, 5, 37, 39)]
  assert ori == [0, 0, 1, 2, 14, 15]  # floor(v / 2.5)
  fn = vtab.TASKS['smallnorb_azi'].label_fn
  assert int(fn({'label_azimuth': tf.constant(17, tf.int64)})) == 17
  assert vtab.TASKS['dsprites_loc'].image_scale == 255.0


def test_group_means_known_answer():
  acc = {t: 0.5 for t in tasks.GROUPS['natural']}
  acc.update({t: 0.8 for t in tasks.GROUPS['specialized']})
  acc.update({t: 0.2 for t in tasks.GROUPS['structured']})
  acc['cifar100'] = 1.2  # natural: (6 * 0.5 + 1.2) / 7 = 0.6
  g = tasks.group_means(acc)
  assert g['natural'] == pytest.approx(0.6) and g['specialized'] == pytest.approx(0.8)
  assert g['structured'] == pytest.approx(0.2) and g['mean'] == pytest.approx(1.6 / 3)
  partial = tasks.group_means({'cifar': 0.4, 'dtd': 0.6, 'eurosat': 0.9})
  assert partial == pytest.approx({'natural': 0.5, 'specialized': 0.9})


def test_prepare_task_names():
  from prompt_jax.data import prepare
  names = prepare.tfds_names(['vtab'])
  assert len(names) == 19 and len(set(names.values())) == 16  # clevr, dsprites, smallnorb shared
  assert prepare.tfds_names(['cifar']) == {'cifar100': 'cifar100:3.*.*'}
  with pytest.raises(KeyError, match='unknown VTAB task'):
    prepare.tfds_names(['imagenet'])
