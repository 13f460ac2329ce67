"""prompt_jax.export.tuned: a sealed tuned/ directory; every damage is one ExportError naming the
file."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from helpers import micro_config
from prompt_jax.export import tuned as export
from prompt_jax.train import trainer as train
from prompt_jax.util import tree


@pytest.fixture(scope='module')
def tuned(tmp_path_factory):
  """An export of an untrained VPT (random backbone): what the trainer writes to tuned/."""
  cfg = micro_config('vpt')
  wd = str(tmp_path_factory.mktemp('export'))
  setup = train.build(cfg, wd)
  trainable, frozen = tree.split(setup.params, *setup.method.trainable_patterns(cfg))
  trainable = jax.tree_util.tree_map(lambda x: x + 0.5, trainable)  # not the init values
  return export.export_tuned(os.path.join(wd, 'tuned'), trainable, frozen, cfg, setup.prepared,
                             backbone_digest=setup.backbone_digest)


def _copy(tuned, tmp_path):
  return shutil.copytree(tuned, tmp_path / 'tuned')


def _edit_config(path):
  with open(path / 'config.json') as f:
    c = json.load(f)
  c['data']['normalization'] = 'imagenet'  # still a valid config: predictions would change
  (path / 'config.json').write_text(json.dumps(c))


def _truncate_params(path):
  data = max((os.path.join(r, n) for r, _, ns in os.walk(path / 'params') for n in ns),
             key=os.path.getsize)
  with open(data, 'r+b') as f:
    f.truncate(os.path.getsize(data) // 2)
  return os.path.relpath(data, path)


def test_a_sealed_export_loads(tuned):
  _, params, config = export.load_tuned('random', tuned)
  assert config.method == 'vpt' and 'head' in params
  assert os.path.exists(os.path.join(tuned, export.MANIFEST))


@pytest.mark.parametrize('damage,named', [
    (_edit_config, 'config.json changed after the export'),
    (lambda p: (p / 'meta.json').write_text('{garbage'), 'meta.json changed after the export'),
    (lambda p: os.remove(p / 'meta.json'), 'meta.json is missing from the export'),
    (lambda p: os.remove(p / 'prepared.npz'), 'prepared.npz is missing from the export'),
    (_truncate_params, 'changed after the export (edited, truncated'),
    (lambda p: os.remove(p / export.MANIFEST), 'manifest.json is missing'),
    (lambda p: (p / export.MANIFEST).write_text('[1, 2'), 'manifest.json does not read'),
])
def test_every_damage_is_one_message_naming_the_file(tuned, tmp_path, damage, named):
  path = _copy(tuned, tmp_path)
  damage(path)
  with pytest.raises(export.ExportError) as e:
    export.load_tuned('random', str(path))
  msg = str(e.value)
  assert named in msg and 'export it again' in msg and '\n' not in msg


def test_meta_without_backbone_digest_is_an_error_unless_allowed(tuned, tmp_path):
  path = _copy(tuned, tmp_path)
  meta = json.loads((path / 'meta.json').read_text())
  del meta['backbone_digest']
  (path / 'meta.json').write_text(json.dumps(meta))
  export.seal(str(path))  # a consistent export that records no digest
  with pytest.raises(export.ExportError, match='records no backbone_digest'):
    export.load_tuned('random', str(path))
  _, params, _ = export.load_tuned('random', str(path), allow_other_backbone=True)
  assert np.isfinite(params['head']['bias']).all()


@pytest.mark.parametrize('damage', [_edit_config, _truncate_params])
def test_torch_export_verifies_the_seal_first(tuned, tmp_path, damage):
  from prompt_jax.export import torch_state as torch_export
  path = _copy(tuned, tmp_path)
  damage(path)
  out = tmp_path / 'p.safetensors'
  with pytest.raises(export.ExportError, match='changed after the export'):
    torch_export.to_safetensors(str(path), str(out))
  assert not out.exists()


def _prompt_file(tuned, tmp_path, edit_sd=None, edit_meta=None):
  from safetensors.numpy import save_file
  from prompt_jax.export import torch_state as torch_export
  sd, meta = torch_export.read_safetensors(
      torch_export.to_safetensors(tuned, str(tmp_path / 'p.safetensors')))
  (edit_sd or (lambda s: None))(sd)
  (edit_meta or (lambda m: None))(meta)
  save_file(sd, str(tmp_path / 'q.safetensors'), metadata=meta)
  return str(tmp_path / 'q.safetensors')


def test_prompt_file_with_nan_is_refused_naming_the_tensor(tuned, tmp_path):
  from prompt_jax.export import torch_state as torch_export

  def nan(sd):
    sd['head.last_layer.bias'] = sd['head.last_layer.bias'].copy()
    sd['head.last_layer.bias'][1] = np.nan
  path = _prompt_file(tuned, tmp_path, edit_sd=nan)
  with pytest.raises(torch_export.PromptFileError,
                     match=r'tensor head\.last_layer\.bias holds NaN'):
    torch_export.load_safetensors('random', path)


def test_prompt_file_import_checks_the_backbone_digest(tuned, tmp_path):
  from prompt_jax.export import torch_state as torch_export
  other = _prompt_file(tuned, tmp_path, edit_meta=lambda m: m.update(backbone_digest='0' * 64))
  with pytest.raises(export.BackboneMismatchError, match='holds other weights'):
    torch_export.load_safetensors('random', other)
  none = _prompt_file(tuned, tmp_path, edit_meta=lambda m: m.pop('backbone_digest'))
  with pytest.raises(export.ExportError, match='records no backbone_digest'):
    torch_export.load_safetensors('random', none)
  _, params, _ = torch_export.load_safetensors('random', none, allow_other_backbone=True)
  assert np.isfinite(params['head']['bias']).all()
