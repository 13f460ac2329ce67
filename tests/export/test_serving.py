"""prompt_jax.load_tasks: a batch mixing three tasks' exports gives, row by row, each task's own
single-task model (`load_tuned`) within 1e-5 of the rows' largest logit, for every method on the
shared ViT; tasks of other prompt counts or methods mix in one call; another backbone is refused
naming the export; an 8-device mesh gives the 1-device result."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import prompt_jax
from prompt_jax.checkpoints import backbone as backbone_lib
from prompt_jax.export import tuned as export
from prompt_jax.util import tree
from prompt_jax.export import serving
from prompt_jax.methods import base

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLASSES = (3, 5, 4)  # the three tasks' class counts: heads pad to 5
RNG = np.random.default_rng(0)
BANK = RNG.normal(size=(4, 64)).astype(np.float32)


def _prepared(method, task):
  if method == 'ship':  # the third task's hierarchy differs: a group of its own
    return {'anchors': (0, 2) if task < 2 else (0, 3), 'bank': BANK + task}
  if method == 'davpt':
    return {'num_proxies': 3, 'class_map': np.arange(CLASSES[task], dtype=np.int32) % 3,
            'centroids': RNG.normal(size=(3, 64)).astype(np.float32)}
  if method == 'spt':
    return {'prompt/prompts': RNG.normal(size=(4, 2, 64)).astype(np.float32)}
  return None


# name -> (method, options)
METHODS = {
    'vpt_deep': ('vpt', dict(num_prompts=2, deep=True, dropout=0.0)),
    'vpt_shallow': ('vpt', dict(num_prompts=3, deep=False, dropout=0.0)),
    'ship': ('ship', dict(num_prompts=2)),
    'davpt': ('davpt', dict(num_proxies=3, num_other=2, proxy_start=3, proxy_end=3)),
    'spt': ('spt', dict(num_prompts=2, deep=True, dropout=0.0)),
    'linear': ('linear', {}),
    'lora': ('lora', dict(dim=2)),
    'adapter': ('adapter', dict(dim=2)),
    'prefix': ('prefix', dict(dim=2)),
    'bitfit': ('bitfit', {}),
}


def make_export(path, method, options, task, seed=0, overrides=None):
  """A Mu/8 export of `method` on the seed's random backbone, trainable params random."""
  kw = dict(checkpoint='random', image_size=32, seed=seed, overrides=overrides, **options)
  config = prompt_jax.model_config('Mu/8', method, **kw)
  prepared = _prepared(method, task)
  _, params = prompt_jax.create_model('Mu/8', method, num_classes=CLASSES[task],
                                      prepared=prepared, **kw)
  trainable, frozen = prompt_jax.split_params(params, method, **options)
  rng = np.random.default_rng([seed, task, len(str(path))])
  trainable = jax.tree_util.tree_map(
      lambda a: (np.asarray(a) + rng.normal(0, 0.3, np.shape(a))).astype(np.float32), trainable)
  digest = tree.digest(backbone_lib.load(base.get(method), config))
  return export.export_tuned(str(path), trainable, frozen, config, prepared or {},
                             backbone_digest=digest)


@pytest.fixture(scope='module')
def exports(tmp_path_factory):
  """name -> [three export folders], made on first use."""
  made = {}
  root = tmp_path_factory.mktemp('serving')

  def get(name):
    if name not in made:
      method, options = METHODS[name]
      made[name] = [make_export(root / f'{name}_{t}', method, options, t) for t in range(3)]
    return made[name]
  return get


def own_logits(path, images):
  model, params, _ = export.load_tuned('random', path)
  return np.asarray(jax.jit(model.apply)({'params': params}, images)[0])


def check_rows(model, paths, images, ids):
  logits, mask = model(images, ids)
  for t, path in enumerate(paths):
    rows = np.nonzero(ids == t)[0]
    want = own_logits(path, images[rows])
    c = want.shape[-1]
    assert mask[rows].sum(-1).tolist() == [c] * len(rows)
    # Another batch size rounds differently in float32, and the error scales with the largest
    # logit of the rows (not with each logit): 1e-5 of it. Another task's params differ by ~1.
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(logits[rows, :c], want, rtol=0, atol=1e-5 * scale)
    assert np.isneginf(logits[rows, c:]).all()
  return logits


IMAGES = RNG.normal(size=(7, 32, 32, 3)).astype(np.float32)
IDS = np.array([2, 0, 1, 1, 0, 2, 0])


@pytest.mark.parametrize('name', sorted(METHODS))
def test_a_mixed_batch_gives_each_row_its_own_tasks_logits(exports, name):
  paths = exports(name)
  model = prompt_jax.load_tasks({f't{t}': p for t, p in enumerate(paths)}, 'random')
  assert model.names == ('t0', 't1', 't2') and model.max_classes == max(CLASSES)
  want_groups = 2 if name == 'ship' else 1  # SHIP's third hierarchy is another model
  assert len(model.groups) == want_groups
  check_rows(model, paths, IMAGES, IDS)
  # names select tasks as indices do
  by_name, _ = model(IMAGES, [f't{t}' for t in IDS])
  np.testing.assert_array_equal(by_name, model(IMAGES, IDS)[0])


def test_tasks_of_other_methods_and_prompt_counts_mix_in_one_call(exports):
  paths = [exports('vpt_deep')[0], exports('vpt_shallow')[1], exports('lora')[2]]
  model = prompt_jax.load_tasks(dict(zip('abc', paths)), 'random')
  assert len(model.groups) == 3
  check_rows(model, paths, IMAGES, IDS)


def test_an_export_of_another_backbone_is_refused_by_name(exports, tmp_path):
  other = make_export(tmp_path / 'other', 'vpt', METHODS['vpt_deep'][1], 0, seed=1)
  with pytest.raises(export.BackboneMismatchError, match=f'{other} was tuned on backbone'):
    prompt_jax.load_tasks({'a': exports('vpt_deep')[0], 'b': other}, 'random')


def test_unknown_tasks_and_shapes_are_one_line_errors(exports):
  with pytest.raises(ValueError, match='two exports share a task name'):
    prompt_jax.load_tasks(exports('linear'), 'random')  # all named by their data.task
  model = prompt_jax.load_tasks(dict(zip('abc', exports('linear'))), 'random')
  with pytest.raises(ValueError, match="task 'cars' is not loaded"):
    model(IMAGES[:1], ['cars'])
  with pytest.raises(ValueError, match='task id 3 is out of range'):
    model(IMAGES[:1], [3])
  with pytest.raises(ValueError, match='one task per image'):
    model(IMAGES[:2], [0])


_SHARDED = '''
import json, sys
import jax, numpy as np
from jax.sharding import Mesh
import prompt_jax
from prompt_jax.train import sharding
paths, images, ids = json.loads(sys.argv[1]), np.load(sys.argv[2]), np.load(sys.argv[3])
assert jax.device_count() == 8
one = Mesh(np.asarray(jax.devices()[:1]).reshape(1, 1), sharding.DATA_AXES)
a = prompt_jax.load_tasks(paths, 'random')
b = prompt_jax.load_tasks(paths, 'random', mesh=one)
assert a.mesh.size == 8
za, zb = a(images, ids)[0], b(images, ids)[0]
print(json.dumps({'max_diff': float(np.nanmax(np.abs(np.where(np.isinf(zb), 0, za - zb)))),
                  'max_abs': float(np.abs(np.where(np.isinf(zb), 0, zb)).max())}))
'''


def test_an_8_device_mesh_gives_the_1_device_result(exports, tmp_path):
  paths = [exports('vpt_deep')[0], exports('vpt_deep')[1], exports('lora')[2]]
  ids = np.array([0, 1, 2, 1, 0, 2, 2, 1, 0, 0, 1])  # groups of 5 and 3 rows: both padded
  images = np.random.default_rng(1).normal(size=(len(ids), 32, 32, 3)).astype(np.float32)
  np.save(tmp_path / 'images.npy', images)
  np.save(tmp_path / 'ids.npy', ids)
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8',
             JAX_PLATFORMS='cpu')
  out = subprocess.run([sys.executable, '-c', _SHARDED, json.dumps(dict(zip('abc', paths))),
                        str(tmp_path / 'images.npy'), str(tmp_path / 'ids.npy')],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  res = json.loads(out.stdout.strip().splitlines()[-1])
  # float32 rounding of other compiled shapes only: ~5e-7 of the largest logit (|z| ~ 20) seen
  assert res['max_diff'] <= 2e-6 * max(1.0, res['max_abs']), res


def test_bucket_sizes_fit_the_mesh():
  assert serving._bucket(7, 7, 1) == 7 and serving._bucket(3, 7, 1) == 4
  assert serving._bucket(3, 7, 8) == 8 and serving._bucket(9, 16, 8) == 16


def test_predict_cli_writes_one_csv_with_each_rows_task(exports, tmp_path):
  """prompt-jax-predict with two --tuned and a path,task CSV: each row's top-k is what the
  single-task CLI path gives for that image with its own export."""
  import csv
  from PIL import Image
  from prompt_jax.export import predict
  paths = {'dtd': exports('vpt_deep')[0], 'pets': exports('lora')[1]}
  rows = []
  for i, task in enumerate(['pets', 'dtd', 'dtd', 'pets', 'dtd']):
    Image.fromarray(RNG.integers(0, 256, (40, 36, 3), dtype=np.uint8)).save(tmp_path / f'{i}.png')
    rows.append(f'{i}.png,{task}\n')
  (tmp_path / 'in.csv').write_text('path,task\n' + ''.join(rows))
  out = tmp_path / 'pred.csv'
  predict.main([f'--tuned=dtd={paths["dtd"]}', f'--tuned=pets={paths["pets"]}',
                '--weights=random', f'--images={tmp_path / "in.csv"}', f'--out={out}',
                '--top_k=4', '--batch_size=3'])
  got = list(csv.DictReader(out.open()))
  assert [r['task'] for r in got] == ['pets', 'dtd', 'dtd', 'pets', 'dtd']
  for task, path in paths.items():
    mine = [r for r in got if r['task'] == task]
    files = [r['path'] for r in mine]
    probs = predict.predict_files(*predict.load(path, 'random'), files, 2)
    np.testing.assert_array_equal([int(r['top1']) for r in mine], probs.argmax(-1))
    np.testing.assert_allclose([float(r['p_top1']) for r in mine], probs.max(-1), atol=1e-5)
    # the 3-class task has no 4th prediction; the 5-class one has
    assert all((r['top4'] == '') == (probs.shape[-1] < 4) for r in mine)
  # the same images as one folder per task: the same rows
  for r in got:
    (tmp_path / 'photos' / r['task']).mkdir(parents=True, exist_ok=True)
    os.link(r['path'], tmp_path / 'photos' / r['task'] / os.path.basename(r['path']))
  predict.main([f'--tuned=dtd={paths["dtd"]}', f'--tuned=pets={paths["pets"]}',
                '--weights=random', f'--images={tmp_path / "photos"}', f'--out={out}',
                '--top_k=4', '--batch_size=3'])
  again = {(os.path.basename(r['path']), r['task']): r['top1'] for r in csv.DictReader(out.open())}
  assert again == {(os.path.basename(r['path']), r['task']): r['top1'] for r in got}


def test_predict_cli_scores_every_exports_split_through_one_backbone(tmp_path):
  """--split with two --tuned: each task's accuracy on its own folder data equals the single-task
  `evaluate_split` of its export."""
  from PIL import Image
  from prompt_jax.export import predict
  paths = {}
  for t, task in enumerate(('dtd', 'eurosat')):
    folder = tmp_path / 'data' / task
    (folder / 'img').mkdir(parents=True)
    lines = []
    for i in range(5):
      Image.fromarray(RNG.integers(0, 256, (36, 32, 3), dtype=np.uint8)).save(
          folder / 'img' / f'{i}.png')
      lines.append(f'img/{i}.png {i % CLASSES[t]}\n')
    for split in ('train800', 'val200', 'train800val200', 'test'):
      (folder / f'{split}.txt').write_text(''.join(lines))
    over = {'data.source': 'folder', 'data.task': task, 'data.data_dir': str(tmp_path / 'data')}
    paths[task] = make_export(tmp_path / f'{task}_tuned', *METHODS['vpt_deep'], t,
                              overrides=over)
  out = tmp_path / 'eval.json'
  predict.main([f'--tuned={p}' for p in paths.values()] +
               ['--weights=random', '--split=test', f'--out={out}', '--batch_size=4'])
  res = json.loads(out.read_text())
  assert sorted(res) == ['dtd', 'eurosat']
  for task, path in paths.items():
    want = predict.evaluate_split(*predict.load(path, 'random'), 'test', 4)
    assert res[task]['n'] == want['n'] == 5
    assert abs(res[task]['accuracy'] - want['accuracy']) < 1e-9
