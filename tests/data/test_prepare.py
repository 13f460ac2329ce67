"""prepare --mock: a fake vtab-1k folder tree with every task's real class range, image shape and
split names, read by the folder source as real vtab-1k folders are."""

import numpy as np

from prompt_jax.data import folder
from prompt_jax.data import prepare
from prompt_jax.data import registry
from prompt_jax.data import tasks

from helpers import micro_config


def test_mock_tree_has_every_tasks_classes_shapes_and_splits(tmp_path):
  assert prepare.main(['--mock', '--tasks=vtab', f'--data_dir={tmp_path}',
                       '--mock_examples=3']) == 0
  assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
      tasks.FOLDER_NAMES.get(t, t) for t in tasks.VTAB_TASKS)
  for task in tasks.VTAB_TASKS:
    files = folder.vtab1k_files(str(tmp_path), task)  # labels checked against the class count
    assert {s: len(f[0]) for s, f in files.items()} == {
        'train800': 3, 'val200': 3, 'train800val200': 6, 'test': 3}
    assert max(files['train800val200'][1]) == min(6, tasks.NUM_CLASSES[task]) - 1
  from PIL import Image
  for task in ('kitti', 'dsprites_loc', 'cifar100'):
    with Image.open(folder.vtab1k_files(str(tmp_path), task)['test'][0][0]) as im:
      h, w, c = prepare.MOCK_SHAPES[task]
      assert im.size == (w, h) and len(im.getbands()) == c
  c = micro_config('vpt')
  c.unlock()
  c.data.update(source='folder', task='dsprites_loc', data_dir=str(tmp_path))
  batch = next(registry.get_source(c.data).iterate('test', 3))
  assert batch['image'].shape == (3, 32, 32, 3) and np.isfinite(batch['image']).all()
  np.testing.assert_array_equal(batch['label'], [0, 1, 2])
