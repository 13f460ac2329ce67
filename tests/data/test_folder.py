"""Folder layouts (vtab-1k txt lists, FGVC json) and parity with the TFDS path."""

import json
import os

import ml_collections
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from prompt_jax.data import preprocess
from prompt_jax.data import registry
from prompt_jax.data import tasks
from prompt_jax.data import vtab


def _cfg(**kw):
  c = ml_collections.ConfigDict(dict(source='folder', layout='vtab1k', task='cifar', data_dir='',
                                     image_size=16, resize='bilinear', crop_pct=1.0,
                                     normalization='imagenet', augment=False, sampler='shuffle',
                                     images_per_class=2, cache_train=True))
  c.update(kw)
  return c


def _png(path, seed, size=(23, 31)):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  arr = np.random.default_rng(seed).integers(0, 256, size + (3,), dtype=np.uint8)
  Image.fromarray(arr).save(path)
  return arr


@pytest.fixture
def vtab1k_tree(tmp_path):
  """vtab-1k/cifar with 6 train800, 4 val200 and 5 test images; labels = index % 3."""
  root = tmp_path / 'vtab-1k'
  lines = {}
  for split, n in (('train800', 6), ('val200', 4), ('test', 5)):
    lines[split] = []
    for i in range(n):
      rel = f'images/{split}/{i:03d}.png'
      _png(str(root / 'cifar' / rel), len(split) * 100 + i)
      lines[split].append(f'{rel} {i % 3}')
  lines['train800val200'] = lines['train800'] + lines['val200']
  for split, ls in lines.items():
    (root / 'cifar' / f'{split}.txt').write_text('\n'.join(ls) + '\n')
  return str(root), lines


def test_vtab1k_round_trip(vtab1k_tree):
  root, lines = vtab1k_tree
  src = registry.get_source(_cfg(data_dir=root))
  assert src.num_classes == 100  # 'cifar' folder = cifar100
  assert src.splits == {'train800': 6, 'val200': 4, 'train800val200': 10, 'test': 5}
  batches = list(src.iterate('test', 4))
  assert len(batches) == 2 and batches[1]['mask'].tolist() == [True, False, False, False]
  labels = np.concatenate([b['label'][b['mask']] for b in batches])
  assert labels.tolist() == [i % 3 for i in range(5)]  # file order
  # Each image equals its own file pushed through the shared preprocessing.
  for i in range(5):
    raw = np.asarray(Image.open(os.path.join(root, 'cifar', f'images/test/{i:03d}.png')))
    want = preprocess.normalize(
        preprocess.resize_crop(tf.constant(raw), 16).numpy(), 'imagenet')
    np.testing.assert_allclose(batches[i // 4]['image'][i % 4], want, atol=1e-6)
  train = list(src.iterate('train800val200', 4, shuffle_seed=7, drop_remainder=True))
  again = list(src.iterate('train800val200', 4, shuffle_seed=7, drop_remainder=True))
  assert len(train) == 2 and all((a['label'] == b['label']).all() for a, b in zip(train, again))
  hosts = [next(src.iterate('train800val200', 4, shuffle_seed=7, process_index=i,
                            process_count=2)) for i in range(2)]
  np.testing.assert_array_equal(np.concatenate([h['image'] for h in hosts]), train[0]['image'])


def test_task_names_find_the_shared_folder_names(vtab1k_tree):
  root, _ = vtab1k_tree  # the folder is 'cifar'; the TFDS task name 'cifar100' finds it
  src = registry.get_source(_cfg(data_dir=root, task='cifar100'))
  assert src.splits['test'] == 5 and src.num_classes == 100
  assert tasks.canonical_task('pets') == 'oxford_iiit_pet'


def test_missing_folder_error(tmp_path):
  with pytest.raises(vtab.DatasetNotFoundError, match='train800.txt'):
    registry.get_source(_cfg(data_dir=str(tmp_path)))


def test_fgvc_json(tmp_path):
  root = tmp_path / 'CUB'
  splits = {'train': {'a/1.png': 5, 'b/2.png': 9, 'a/3.png': 5},
            'val': {'b/4.png': 9}, 'test': {'a/5.png': 5, 'c/6.png': 12}}
  for s, d in splits.items():
    for i, p in enumerate(d):
      _png(str(root / 'images' / p), i)
    (root / f'{s}.json').write_text(json.dumps(d))
  splits['train']['c/7.png'] = 12
  _png(str(root / 'images' / 'c/7.png'), 3)
  (root / 'train.json').write_text(json.dumps(splits['train']))
  src = registry.get_source(_cfg(layout='fgvc', task='cub', data_dir=str(root)))
  assert src.num_classes == 3 and src.splits['trainval'] == 5
  b = next(src.iterate('test', 2))
  assert b['label'].tolist() == [0, 2]  # raw 5, 12 -> sorted ids 0, 2


def test_folder_and_tfds_give_identical_arrays(tmp_path, monkeypatch):
  arr = _png(str(tmp_path / 'cifar' / 'x.png'), 0, (40, 29))
  (tmp_path / 'cifar' / 'test.txt').write_text('x.png 3\n')
  for s in ('train800', 'val200', 'train800val200'):
    (tmp_path / 'cifar' / f'{s}.txt').write_text('x.png 3\n')
  opts = dict(image_size=24, resize='bicubic', crop_pct=0.875, normalization='imagenet')
  fsrc = registry.get_source(_cfg(data_dir=str(tmp_path), **opts))
  # What TFDS yields for cifar100 after decoding: {'image': uint8[H, W, 3], 'label': int64, ...}.
  monkeypatch.setattr(vtab, 'as_dataset', lambda b, s: tf.data.Dataset.from_tensors(
      {'image': tf.constant(arr), 'label': tf.constant(3, tf.int64),
       'coarse_label': tf.constant(0, tf.int64)}))
  monkeypatch.setattr(vtab, 'base_split_sizes', lambda b: {'train': 50000, 'test': 10000})
  with tfds.testing.mock_data(num_examples=1, policy=tfds.testing.MockPolicy.USE_CODE):
    vsrc = registry.get_source(ml_collections.ConfigDict(dict(
        source='vtab', task='cifar100', data_dir=None, **opts)))
    a = next(vsrc.iterate('test', 1))
  b = next(fsrc.iterate('test', 1))
  assert a['image'].shape == (1, 24, 24, 3)
  np.testing.assert_array_equal(a['image'], b['image'])
  assert a['label'].tolist() == b['label'].tolist() == [3]


def test_resize_crop_center():
  img = np.zeros((8, 8, 3), np.uint8)
  img[2:6, 2:6] = 255
  out = preprocess.resize_crop(tf.constant(img), 4, 'bilinear', crop_pct=0.5).numpy()
  np.testing.assert_allclose(out, 1.0)  # 8 -> resize 8 -> centre 4×4 is the white square
  grey = preprocess.resize_crop(tf.zeros((5, 7, 1), tf.uint8), 6).numpy()
  assert grey.shape == (6, 6, 3)


def test_augment_changes_train_not_eval(vtab1k_tree):
  root, _ = vtab1k_tree
  src = registry.get_source(_cfg(data_dir=root, augment=True))
  plain = registry.get_source(_cfg(data_dir=root))
  a = next(src.iterate('train800', 2, shuffle_seed=1))
  b = next(plain.iterate('train800', 2, shuffle_seed=1))
  c = next(src.iterate('train800', 2, shuffle_seed=1))
  assert a['image'].shape == b['image'].shape and not np.allclose(a['image'], b['image'])
  np.testing.assert_array_equal(a['image'], c['image'])  # same seed, same crops
  np.testing.assert_array_equal(next(src.iterate('test', 2))['image'],
                                next(plain.iterate('test', 2))['image'])


def test_class_balanced_source(vtab1k_tree):
  root, _ = vtab1k_tree
  src = registry.get_source(_cfg(data_dir=root, sampler='class_balanced', images_per_class=2))
  batches = list(src.iterate('train800val200', 4, shuffle_seed=0))
  assert len(batches) == 10 // 4
  for b in batches:
    assert b['mask'].all()
    _, counts = np.unique(b['label'], return_counts=True)
    assert counts.tolist() == [2, 2]


def _vtab1k_task(root, folder, lines_by_split):
  for split in ('train800', 'val200', 'train800val200', 'test'):
    (root / folder).mkdir(parents=True, exist_ok=True)
    (root / folder / f'{split}.txt').write_text(lines_by_split.get(split, 'x.png 1\n'))
  _png(str(root / folder / 'x.png'), 0)
  _png(str(root / folder / 'sub dir' / 'y z.png'), 1)


@pytest.mark.parametrize('alias,folder', [('retinopathy', 'diabetic_retinopathy'),
                                          ('pets', 'oxford_iiit_pet'),
                                          ('oxford_pet', 'oxford_iiit_pet'),
                                          ('flowers102', 'oxford_flowers102'),
                                          ('camelyon', 'patch_camelyon')])
def test_task_aliases_find_the_folder(tmp_path, alias, folder):
  _vtab1k_task(tmp_path, folder, {})
  src = registry.get_source(_cfg(data_dir=str(tmp_path), task=alias))
  assert src.splits['test'] == 1
  assert src.num_classes == tasks.NUM_CLASSES[tasks.canonical_task(alias)]


def test_tabs_and_repeated_spaces(tmp_path):
  _vtab1k_task(tmp_path, 'dtd', {'test': 'x.png\t3\nsub dir/y z.png   46\n\n'})
  src = registry.get_source(_cfg(data_dir=str(tmp_path), task='dtd'))
  b = next(src.iterate('test', 2))
  assert b['label'].tolist() == [3, 46]


@pytest.mark.parametrize('line,match', [('x.png 47', r'test.txt:2: label 47 outside \[0, 47\)'),
                                        ('x.png -1', r'test.txt:2: label -1 outside'),
                                        ('x.png', r'test.txt:2: expected "relative/path label"')])
def test_bad_labels_name_file_and_line(tmp_path, line, match):
  _vtab1k_task(tmp_path, 'dtd', {'test': f'x.png 0\n{line}\n'})
  with pytest.raises(ValueError, match=match):
    registry.get_source(_cfg(data_dir=str(tmp_path), task='dtd'))


def test_jpeg_files_decode_like_pil(tmp_path):
  rng = np.random.default_rng(0)
  smooth = np.cumsum(rng.normal(size=(48, 64, 3)), axis=1) * 8 + 128
  Image.fromarray(smooth.clip(0, 255).astype(np.uint8)).save(tmp_path / 'a.jpg', quality=75)
  pil = np.asarray(Image.open(tmp_path / 'a.jpg').convert('RGB'))
  from prompt_jax.data import folder
  got = folder.decode_file(tf.constant(str(tmp_path / 'a.jpg'))).numpy()
  np.testing.assert_array_equal(got, pil)
