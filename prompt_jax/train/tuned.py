"""The tuned/ folder a run writes: its prompts (+ head) as an orbax checkpoint, sealed.

  export_tuned(dir, trainable, frozen, config, prepared, backbone_digest=d)  # the trainer: tuned/
  verify(dir)                                   # every reader, before it reads anything

Layout of `dir`: params/ (orbax checkpoint of the trainable subtree plus the non-trained prompt
constants under 'prompt/', e.g. SHIP's prototype bank), config.json, meta.json (num_classes, keys,
backbone_digest: `tree.digest` of the backbone it was trained on), prepared.npz (the method's
prepared values, `treeio`: no pickle, so an export from anyone loads without running code).

`dir` is sealed: manifest.json, written last, holds the sha256 of every other file (params/
included). Orbax restores a data file with one changed byte without an error, so readers call
`verify` first: a hand-edited config.json, a damaged meta.json or a truncated params/ file is an
`ExportError` naming the file and the fix, never a silent change of predictions.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from prompt_jax.train import workdir as workdir_lib
from prompt_jax.train.errors import ExportError
from prompt_jax.util import tree
from prompt_jax.util import treeio


MANIFEST = 'manifest.json'
# The export layer's other modules (serving.py) live in the folder export/ beside this file.




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
