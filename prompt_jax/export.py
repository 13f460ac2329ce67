"""Standalone export of tuned prompts (+ head) and their reload for inference.

  export_tuned(dir, trainable, frozen, config, prepared, backbone_digest=d)  # the trainer: tuned/
  model, params, config = load_tuned('ViT-B_16.npz', dir)  # any process, no workdir needed
  logits, _ = model.apply({'params': params}, images)

Layout of `dir`: params/ (orbax checkpoint of the trainable subtree plus the non-trained prompt
constants under 'prompt/', e.g. SHIP's prototype bank), config.json, meta.json (num_classes, keys,
backbone_digest: `tree.digest` of the backbone it was trained on), prepared.npz (the method's
prepared values, `treeio`: no pickle, so an export from anyone loads without running code).

The prompts only mean something on the backbone they were tuned on: `load_tuned` with weights of
another digest is an error (`BackboneMismatchError`) unless `allow_other_backbone=True`.

`dir` is sealed: manifest.json, written last, holds the sha256 of every other file (params/
included). `load_tuned` checks it before reading anything, so a hand-edited config.json, a damaged
meta.json or a truncated params/ file is an `ExportError` naming the file and the fix, never a
silent change of predictions or a JSON / tensorstore traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from prompt_jax import backbone as backbone_lib
from prompt_jax import tree
from prompt_jax import treeio
from prompt_jax import workdir as workdir_lib
from prompt_jax.methods import base


MANIFEST = 'manifest.json'
# The export layer's other modules (serving.py) live in the folder export/ beside this file.
__path__ = [os.path.join(os.path.dirname(os.path.abspath(__file__)), 'export')]


class BackboneMismatchError(ValueError):
  """The backbone given to `load_tuned` is not the one the prompts were tuned on."""


class ExportError(ValueError):
  """An export directory that is incomplete or changed since it was written."""


def _sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      h.update(chunk)
  return h.hexdigest()


def _files(path: str) -> list[str]:
  """Every file under `path` but the manifest, '/'-relative, sorted."""
  out = []
  for root, _, names in os.walk(path):
    out += [os.path.relpath(os.path.join(root, n), path) for n in names]
  return sorted(f.replace(os.sep, '/') for f in out if f != MANIFEST)


def seal(path: str) -> None:
  """Writes `path`/manifest.json: the sha256 of every file under `path`."""
  files = {f: _sha256(os.path.join(path, f)) for f in _files(path)}
  workdir_lib.write_json(os.path.join(path, MANIFEST), {'sha256': files})


def verify(path: str) -> None:
  """Raises ExportError unless every file `path`/manifest.json lists is there with its digest."""
  again = ('export it again (train.export=True on its workdir, or the file from the original '
           'export)')
  manifest = os.path.join(path, MANIFEST)
  if not os.path.isdir(path):
    raise ExportError(f'{path} is not a directory: pass the tuned/ directory of a run')
  if not os.path.exists(manifest):
    raise ExportError(f'{manifest} is missing: {path} is not a finished export of this version '
                      f'(or an older one without digests); {again}')
  try:
    with open(manifest) as f:
      want = json.load(f)['sha256']
  except (ValueError, KeyError, TypeError) as e:
    raise ExportError(f'{manifest} does not read ({type(e).__name__}: {e}); {again}') from None
  unlisted = [f for f in ('config.json', 'meta.json', 'prepared.npz') if f not in want]
  if unlisted or not any(f.startswith('params/') for f in want):
    raise ExportError(f'{manifest} does not list {unlisted or "params/"}; {again}')
  for name, digest in want.items():
    file = os.path.join(path, name)
    if not os.path.exists(file):
      raise ExportError(f'{file} is missing from the export; {again}')
    if _sha256(file) != digest:
      raise ExportError(f'{file} changed after the export (edited, truncated or damaged): it '
                        f'would change the predictions silently; {again}')


def export_tuned(path: str, trainable: Any, frozen: Any, config: ml_collections.ConfigDict,
                 prepared: Any, *, backbone_digest: str) -> str:
  """Writes the tuned subtree; returns `path`."""
  path = os.path.abspath(path)
  tuned = {**{k: v for k, v in tree.flat(frozen).items() if k.startswith('prompt/')},
           **tree.flat(trainable)}
  nested = tree.nest(tuned)
  ckptr = ocp.StandardCheckpointer()
  ckptr.save(os.path.join(path, 'params'), nested, force=True)
  ckptr.wait_until_finished()
  if jax.process_index() > 0:  # multi-host: every process joins the save, process 0 writes
    return path
  with open(os.path.join(path, 'config.json'), 'w') as f:
    f.write(config.to_json(indent=1))
  head = tuned.get('head/kernel')
  workdir_lib.write_json(os.path.join(path, 'meta.json'), {
      'num_classes': int(head.shape[-1]) if head is not None else 0, 'keys': sorted(tuned),
      'backbone_digest': backbone_digest, 'backbone_checkpoint': config.init.checkpoint})
  treeio.save(os.path.join(path, 'prepared.npz'), prepared)
  seal(path)
  return path


def read_export(tuned_ckpt: str, backbone_ckpt: str, backbone_format: str | None = None
                ) -> tuple[ml_collections.ConfigDict, dict[str, Any], Any]:
  """(config, meta, prepared) of a verified export, its config pointed at `backbone_ckpt`."""
  tuned_ckpt = os.path.abspath(tuned_ckpt)
  verify(tuned_ckpt)
  with open(os.path.join(tuned_ckpt, 'config.json')) as f:
    config = ml_collections.ConfigDict(json.load(f))
  with open(os.path.join(tuned_ckpt, 'meta.json')) as f:
    meta = json.load(f)
  prepared_path = os.path.join(tuned_ckpt, 'prepared.npz')
  if not os.path.exists(prepared_path):
    raise FileNotFoundError(
        f'{prepared_path} is missing: {tuned_ckpt} was exported by an older prompt_jax (a pickle, '
        'which is not loaded since it can run code); export it again with this version')
  prepared = treeio.load(prepared_path)
  config.init.checkpoint = backbone_ckpt
  if backbone_format:
    config.init.format = backbone_format
  return config, meta, prepared


def check_backbone(tuned_ckpt: str, meta: dict[str, Any], digest: str, backbone_ckpt: str,
                   allow_other_backbone: bool = False) -> None:
  """Raises unless `digest` (of the weights `backbone_ckpt`) is the export's backbone_digest."""
  want = meta.get('backbone_digest')
  if want is None and not allow_other_backbone:
    raise ExportError(
        f'{tuned_ckpt}/meta.json records no backbone_digest: cannot check that {backbone_ckpt!r} '
        'is the backbone it was tuned on. Export it again, or pass allow_other_backbone=True to '
        'load it anyway.')
  if want is not None and digest != want and not allow_other_backbone:
    raise BackboneMismatchError(
        f'{tuned_ckpt} was tuned on backbone {want[:16]}... ({meta.get("backbone_checkpoint")!r})'
        f', but {backbone_ckpt!r} holds other weights ({digest[:16]}...): its prompts and head '
        'would give wrong predictions. Load the weights it was tuned on, or pass '
        'allow_other_backbone=True to use these anyway.')


def load_tuned(backbone_ckpt: str, tuned_ckpt: str, *, backbone_format: str | None = None,
               allow_other_backbone: bool = False
               ) -> tuple[Any, dict[str, Any], ml_collections.ConfigDict]:
  """Rebuilds the tuned model: backbone weights from `backbone_ckpt` + the exported subtree.

  backbone_ckpt: path of the weights the prompts were tuned on ('random' for the seeded random
  init recorded in the config, for tests). Weights of another digest than the export's are an
  error unless `allow_other_backbone`. Returns (model, params, config). Raises ExportError when
  `tuned_ckpt` is not a complete, unchanged export (`verify`), naming the file.
  """
  tuned_ckpt = os.path.abspath(tuned_ckpt)
  config, meta, prepared = read_export(tuned_ckpt, backbone_ckpt, backbone_format)
  method = base.get(config.method)
  backbone = backbone_lib.load(method, config)
  check_backbone(tuned_ckpt, meta, tree.digest(backbone), backbone_ckpt, allow_other_backbone)
  tuned = ocp.StandardCheckpointer().restore(os.path.join(tuned_ckpt, 'params'))
  model = method.model(config, meta['num_classes'], prepared)
  return model, tree.merge(tuned, backbone), config
