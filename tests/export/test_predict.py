"""prompt-jax-predict: a split scored from a tuned/ export equals the model on the data path; image
files get the predictions of the run's evaluation image path; a release-named state dict too."""

import csv
import json
import os

import jax
import numpy as np
from PIL import Image

import prompt_jax
from prompt_jax.checkpoints import backbone as backbone_lib
from prompt_jax.export import tuned as export
from prompt_jax.export import predict
from prompt_jax.export import torch_state as torch_export
from prompt_jax.util import tree
from prompt_jax.methods import base

SIZES = ((23, 31), (40, 17), (32, 32), (19, 45), (50, 36), (33, 20))


def _run(tmp_path):
  """A VPT export on a random Mu/8 backbone + a vtab-1k folder of non-square images (dtd)."""
  rng = np.random.default_rng(0)
  task = tmp_path / 'data' / 'dtd'
  (task / 'img').mkdir(parents=True)
  images = [rng.integers(0, 256, s + (3,), dtype=np.uint8) for s in SIZES]
  labels = [int(v) for v in rng.integers(0, 3, len(images))]
  for i, img in enumerate(images):
    Image.fromarray(img).save(task / 'img' / f'{i}.png')
  for split in ('train800', 'val200', 'train800val200', 'test'):
    (task / f'{split}.txt').write_text(''.join(f'img/{i}.png {y}\n' for i, y in enumerate(labels)))
  kw = dict(checkpoint='random', image_size=32, num_prompts=2, deep=True, dropout=0.0,
            overrides={'data.source': 'folder', 'data.task': 'dtd',
                       'data.data_dir': str(tmp_path / 'data'), 'data.resize': 'bicubic',
                       'data.resize_to': 'shorter_side', 'data.antialias': True,
                       'data.normalization': 'imagenet'})
  config = prompt_jax.model_config('Mu/8', 'vpt', **kw)
  model, params = prompt_jax.create_model('Mu/8', 'vpt', num_classes=47, **kw)
  trainable, frozen = prompt_jax.split_params(params, 'vpt')
  trainable = jax.tree_util.tree_map(  # a head that tells the images apart
      lambda a: np.random.default_rng(1).normal(0, 1.0, np.shape(a)).astype(np.float32), trainable)
  digest = tree.digest(backbone_lib.load(base.get('vpt'), config))
  tuned = export.export_tuned(str(tmp_path / 'tuned'), trainable, frozen, config, {},
                              backbone_digest=digest)
  logits, _ = model.apply({'params': tree.merge(trainable, frozen)},
                          prompt_jax.preprocess(images, config))
  return tuned, np.asarray(logits), np.array(labels), task


def test_split_and_image_files_from_an_export(tmp_path):
  tuned, logits, labels, task = _run(tmp_path)
  want = float((logits.argmax(-1) == labels).mean())
  out = tmp_path / 'eval.json'
  predict.main(['--tuned', tuned, '--weights', 'random', '--split', 'test', '--out', str(out),
                '--batch_size', '4'])
  res = json.loads(out.read_text())
  assert res['n'] == len(labels) and res['split'] == 'test'
  assert abs(res['accuracy'] - want) < 1e-9, (res, want)

  out = tmp_path / 'pred.csv'
  predict.main(['--tuned', tuned, '--weights', 'random', '--images', str(task / 'img'),
                '--out', str(out), '--top_k', '3', '--batch_size', '4'])
  rows = list(csv.DictReader(out.open()))
  assert [r['path'].rsplit('/', 1)[1] for r in rows] == [f'{i}.png' for i in range(len(labels))]
  np.testing.assert_array_equal([int(r['top1']) for r in rows], logits.argmax(-1))
  p = np.exp(logits - logits.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  np.testing.assert_allclose([float(r['p_top1']) for r in rows], p.max(-1), atol=1e-5)

  # the same prompts as a PyTorch (VPT release-named) state dict
  st = torch_export.to_safetensors(tuned, str(tmp_path / 'vpt.safetensors'))
  out = tmp_path / 'pred_st.csv'
  predict.main(['--tuned', st, '--weights', 'random', '--images', str(task / 'img'),
                '--out', str(out), '--batch_size', '8'])
  np.testing.assert_array_equal([int(r['top1']) for r in csv.DictReader(out.open())],
                                logits.argmax(-1))


_EVAL_CONFIG = '''
import prompt_jax


def get_config():
  c = prompt_jax.model_config('Mu/8', 'vpt', **{kw!r})
  c.unlock()
  c.program = 'evaluate'
  c.train.eval_batch_size = 4
  c.lock()
  return c
'''


def test_evaluate_program_scores_the_export_through_the_cli(tmp_path):
  """`prompt-jax --config=... --config.program=evaluate`: evaluate.json holds the accuracy of the
  export's own params (the logits computed when it was made, and load + predict.evaluate_split)."""
  import subprocess
  import sys
  tuned, logits, _, task = _run(tmp_path)
  # Test labels the export's params get right for 4 of the 6 images (other params would not).
  top = logits.argmax(-1)
  labels = np.where(np.arange(len(top)) < 4, top, (top + 1) % logits.shape[-1])
  (task / 'test.txt').write_text(''.join(f'img/{i}.png {y}\n' for i, y in enumerate(labels)))
  want = 4 / 6
  kw = dict(checkpoint='random', image_size=32, num_prompts=2, deep=True, dropout=0.0,
            overrides={'data.source': 'folder', 'data.task': 'dtd',
                       'data.data_dir': str(tmp_path / 'data'), 'data.resize': 'bicubic',
                       'data.resize_to': 'shorter_side', 'data.antialias': True,
                       'data.normalization': 'imagenet'})
  (tmp_path / 'eval_cfg.py').write_text(_EVAL_CONFIG.format(kw=kw))
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  out = subprocess.run([sys.executable, '-m', 'prompt_jax.main',
                        f'--config={tmp_path / "eval_cfg.py"}', f'--workdir={tmp_path / "ev"}',
                        f'--config.evaluate.tuned={tuned}'],
                       cwd=root, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  res = json.loads((tmp_path / 'ev' / 'evaluate.json').read_text())
  model, params, config = predict.load(tuned, 'random')
  direct = predict.evaluate_split(model, params, config, 'test', 4)['accuracy']
  assert abs(res['accuracy']['test'] - want) < 1e-9 and abs(direct - want) < 1e-9
  assert res['n'] == {'test': len(labels)} and res['tuned'] == os.path.abspath(tuned)
