"""Fault scenarios at the doors into the project, one table: each row runs a CLI on a hostile or
damaged input and names the exit code, the one stderr line (a regex), an upper bound on seconds
and the files it may write. Every file of the kit (the export, weights and prompt files the rows
use) must be unchanged afterwards, and the marker a code-running file would write must not exist.

Adding a scenario is one line in SCENARIOS; `{name}` in a command is a path of the kit."""

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image


@dataclasses.dataclass(frozen=True)
class Scenario:
  name: str
  command: str  # '<cli> args...', cli: predict or torch-export; {kit paths} substituted
  code: int  # expected exit code
  line: str  # regex the last stderr line must match
  max_s: float  # upper bound on the wall time of the command
  lines: int = 1  # stderr lines (a skipped image is named on its own line)
  writes: tuple[str, ...] = ()  # files it may create in its working directory
  env: tuple[str, ...] = ()  # 'NAME=value' set for the command


P = 'predict --weights random'
SCENARIOS = [
    Scenario('export: edited config', f'{P} --tuned {{edited}} --images {{images}}', 2,
             r'config\.json changed after the export', 30),
    Scenario('export: flipped byte in params', f'{P} --tuned {{flipped}} --images {{images}}', 2,
             r'params/.* changed after the export', 30),
    Scenario('export: truncated params', f'{P} --tuned {{truncated}} --images {{images}}', 2,
             r'params/.* changed after the export \(edited, truncated', 30),
    Scenario('export: not a directory', f'{P} --tuned {{not_prompts}} --images {{images}}', 2,
             r"neither a run's tuned/ directory nor a \.safetensors", 20),
    Scenario('prompts: NaN', f'{P} --tuned {{nan_st}} --images {{images}}', 2,
             r'tensor head\.last_layer\.bias holds NaN or inf', 20),
    Scenario('prompts: not safetensors', f'{P} --tuned {{fake_st}} --images {{images}}', 2,
             r'fake\.safetensors is not a readable \.safetensors file', 20),
    Scenario('prompts: no backbone digest', f'{P} --tuned {{nodigest_st}} --images {{images}}', 2,
             r'records no backbone_digest.*allow_other_backbone', 60),
    Scenario('prompts: other backbone', f'{P} --tuned {{other_st}} --images {{images}}', 2,
             r'was tuned on backbone 00000000.*holds other weights', 60),
    Scenario('prompts: wrong shape', f'{P} --tuned {{shape_st}} --images {{images}}', 2,
             r'prompt_embeddings \(1, 3, 64\) and deep_prompt_embeddings \(3, 8, 64\) differ', 60),
    Scenario('prompts: missing key', f'{P} --tuned {{missing_st}} --images {{images}}', 2,
             r"has no 'head\.last_layer\.bias', which the vpt model needs", 60),
    Scenario('prompts: extra key', f'{P} --tuned {{extra_st}} --images {{images}}', 2,
             r'1 state dict keys are not vpt prompt/head tensors', 60),
    Scenario('weights: runs code', 'predict --weights {evil_pth} --weights_format timm '
             '--tuned {tuned} --images {images}', 2,
             r'evil\.pth: refused to unpickle the global (builtins|_?io)\.open', 60),
    Scenario('images: empty folder', f'{P} --tuned {{tuned}} --images {{empty}}', 2,
             r'no image files \(\.jpg', 20),
    Scenario('images: only corrupt', f'{P} --tuned {{tuned}} --images {{bad_images}}', 2,
             r'none of the 2 image files decodes', 60, lines=3),
    Scenario('images: one fake jpg', f'{P} --tuned {{tuned}} --images {{images}} {{fake_jpg}}', 1,
             r'1 of 4 image files did not decode and were skipped.*other 3 are in predictions',
             60, lines=2, writes=('predictions.csv',)),
    Scenario('split: typo', f'{P} --tuned {{tuned}} --split tst', 2,
             r"split 'tst' is not in digits:downstream .*its splits are \['test', 'train800'", 10),
    Scenario('main: typo in a task spec', 'main --config={demo}:tsk=dtd --workdir=wd', 2,
             r"demo\.py:tsk=dtd: ValueError: unknown config argument 'tsk'", 10),
    Scenario('main: garbage run.json', 'main --config={demo} --workdir={garbage_wd}', 2,
             r'run\.json does not read as a run record .*use a new --workdir', 10),
    Scenario('main: warm-up longer than training', 'main --config={demo} --config.program=train '
             '--config.init.checkpoint=random --config.train.epochs=1 --workdir=wd', 2,
             r'train\.warmup_epochs=3 > train\.epochs=1: the learning rate would never reach', 10),
    Scenario('main: batch larger than the data', 'main --config={demo} --config.program=train '
             '--config.init.checkpoint=random --config.train.warmup_epochs=1 '
             '--config.train.batch_size=1000 --config.train.drop_last=True --workdir=wd', 2,
             r'train\.batch_size=1000 exceeds the 300 examples of data\.train_split=.train800.',
             10),
    Scenario('main: bad eval split', 'main --config={demo} --workdir=wd '
             "--config.data.eval_splits=('val200','tst')", 2,
             r"data\.eval_splits='tst': the digits source has no such split; it has \['test'", 10),
    Scenario('main: bad PROMPT_JAX_MALLOC', 'main --config={demo} --workdir=wd', 2,
             r"PROMPT_JAX_MALLOC='bogus': use system .* or reuse", 5,
             env=('PROMPT_JAX_MALLOC=bogus',)),
    Scenario('torch-export: edited config', 'torch-export --tuned {edited} --out x.safetensors',
             2, r'config\.json changed after the export', 30),
    Scenario('torch-export: flipped byte', 'torch-export --tuned {flipped} --out x.safetensors',
             2, r'params/.* changed after the export', 30),
    Scenario('torch-export: truncated', 'torch-export --tuned {truncated} --out x.safetensors',
             2, r'params/.* changed after the export', 30),
]

CLIS = {'predict': 'prompt_jax.export.predict', 'torch-export': 'prompt_jax.export.torch_state',
        'main': 'prompt_jax.main'}


def _params_file(path):
  return max((os.path.join(r, n) for r, _, ns in os.walk(os.path.join(path, 'params'))
              for n in ns), key=os.path.getsize)


def _damaged_exports(kit, tuned):
  for name in ('edited', 'flipped', 'truncated'):
    shutil.copytree(tuned, kit[name])
  config = json.loads(open(os.path.join(kit['edited'], 'config.json')).read())
  config['data']['normalization'] = 'imagenet'  # valid, but the predictions would change
  open(os.path.join(kit['edited'], 'config.json'), 'w').write(json.dumps(config))
  data = _params_file(kit['flipped'])
  blob = bytearray(open(data, 'rb').read())
  blob[len(blob) // 2] ^= 0x40
  open(data, 'wb').write(bytes(blob))
  data = _params_file(kit['truncated'])
  os.truncate(data, os.path.getsize(data) // 2)


def _prompt_files(kit, tuned):
  from safetensors.numpy import save_file
  from prompt_jax.export import torch_state as torch_export
  sd, meta = torch_export.read_safetensors(
      torch_export.to_safetensors(tuned, os.path.join(kit['dir'], 'good.safetensors')))

  def write(name, tensors=sd, **meta_changes):
    m = {k: v for k, v in {**meta, **meta_changes}.items() if v is not None}
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, kit[name], metadata=m)
  nan = dict(sd, **{'head.last_layer.bias': np.full_like(sd['head.last_layer.bias'], np.nan)})
  write('nan_st', nan)
  write('nodigest_st', backbone_digest=None)
  write('other_st', backbone_digest='0' * 64)
  write('shape_st', dict(sd, **{'enc.transformer.prompt_embeddings': np.zeros((1, 3, 64), 'f4')}))
  write('missing_st', {k: v for k, v in sd.items() if k != 'head.last_layer.bias'})
  write('extra_st', dict(sd, **{'enc.transformer.encoder.layer.0.fc1.weight': np.zeros(2, 'f4')}))
  open(kit['fake_st'], 'w').write('{"not": "safetensors"}\n')
  open(kit['not_prompts'], 'w').write('hello\n')


def _images(kit):
  rng = np.random.default_rng(0)
  for d in ('images', 'empty', 'bad_images'):
    os.makedirs(kit[d])
  for i in range(3):
    Image.fromarray(rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8)).save(
        os.path.join(kit['images'], f'{i}.png'))
  for name in ('a.jpg', 'b.png'):
    open(os.path.join(kit['bad_images'], name), 'wb').write(b'not an image')
  open(kit['fake_jpg'], 'wb').write(b'\xff\xd8\xff truncated jpeg')


def _evil_weights(kit):
  import pickle
  import zipfile

  class Evil:
    def __reduce__(self):
      return (open, (kit['marker'], 'w'))
  with zipfile.ZipFile(kit['evil_pth'], 'w') as zf:  # torch.save's layout
    zf.writestr('evil/data.pkl', pickle.dumps({'cls_token': Evil()}, protocol=2))
    zf.writestr('evil/version', '3\n')


NAMES = {'edited': 'edited', 'flipped': 'flipped', 'truncated': 'truncated',
         'nan_st': 'nan.safetensors', 'nodigest_st': 'nodigest.safetensors',
         'other_st': 'other.safetensors', 'shape_st': 'shape.safetensors',
         'missing_st': 'missing.safetensors', 'extra_st': 'extra.safetensors',
         'fake_st': 'fake.safetensors', 'not_prompts': 'prompts.txt', 'images': 'images',
         'empty': 'empty', 'bad_images': 'bad_images', 'fake_jpg': 'fake.jpg',
         'evil_pth': 'evil.pth', 'marker': 'PWNED', 'garbage_wd': 'garbage_wd'}


@pytest.fixture(scope='module')
def kit(tmp_path_factory):
  """The inputs the scenarios use: a sealed VPT export (random micro backbone), damaged copies,
  prompt files, images and a code-running weights file."""
  import jax
  from helpers import micro_config
  from prompt_jax.export import tuned as export
  from prompt_jax.train import trainer as train
  from prompt_jax.util import tree
  root = str(tmp_path_factory.mktemp('faults'))
  cfg = micro_config('vpt')
  setup = train.build(cfg, os.path.join(root, 'wd'))
  trainable, frozen = tree.split(setup.params, *setup.method.trainable_patterns(cfg))
  trainable = jax.tree_util.tree_map(lambda x: x + 0.5, trainable)
  tuned = export.export_tuned(os.path.join(root, 'tuned'), trainable, frozen, setup.config,
                              setup.prepared, backbone_digest=setup.backbone_digest)
  k = {name: os.path.join(root, f) for name, f in NAMES.items()}
  k.update(dir=root, tuned=tuned,
           demo=os.path.join(os.path.dirname(os.path.dirname(__file__)), 'configs', 'demo.py'))
  _damaged_exports(k, tuned)
  _prompt_files(k, tuned)
  _images(k)
  _evil_weights(k)
  os.makedirs(k['garbage_wd'])
  open(os.path.join(k['garbage_wd'], 'run.json'), 'w').write('{"config": {"trunc')
  return k


def _digests(root):
  out = {}
  for r, _, names in os.walk(root):
    for n in names:
      p = os.path.join(r, n)
      out[p] = hashlib.sha256(open(p, 'rb').read()).hexdigest()
  return out


@pytest.mark.parametrize('case', SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario(kit, tmp_path, case):
  cli, *args = case.command.format(**kit).split()
  before = _digests(kit['dir'])
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', JAX_PLATFORMS='cpu',
             **dict(e.split('=', 1) for e in case.env))
  start = time.monotonic()
  r = subprocess.run([sys.executable, '-m', CLIS[cli], *args], cwd=tmp_path, env=env,
                     capture_output=True, text=True, timeout=case.max_s * 3)
  took = time.monotonic() - start
  err = [line for line in r.stderr.splitlines() if line.strip()]
  assert r.returncode == case.code, r.stderr[-3000:]
  assert len(err) == case.lines and re.search(case.line, err[-1]), r.stderr[-3000:]
  assert took < case.max_s, f'{case.name}: answered after {took:.1f}s'
  assert _digests(kit['dir']) == before, 'the kit changed'
  assert not os.path.exists(kit['marker'])
  assert sorted(os.listdir(tmp_path)) == sorted(case.writes)
