"""Reloading an export (a run's sealed tuned/ folder, `prompt_jax.train.tuned`) for inference.

  model, params, config = load_tuned('ViT-B_16.npz', dir)  # any process, no workdir needed
  logits, _ = model.apply({'params': params}, images)

The prompts only mean something on the backbone they were tuned on: `load_tuned` with weights of
another digest is an error (`BackboneMismatchError`) unless `allow_other_backbone=True`.
"""

from __future__ import annotations

import json
import os
from typing import Any

import ml_collections
import orbax.checkpoint as ocp

from prompt_jax.checkpoints import backbone as backbone_lib
from prompt_jax.methods import base
from prompt_jax.train.errors import BackboneMismatchError, ExportError
from prompt_jax.train.tuned import MANIFEST, export_tuned, seal, verify
from prompt_jax.util import tree
from prompt_jax.util import treeio

__all__ = ['MANIFEST', 'BackboneMismatchError', 'ExportError', 'check_backbone', 'export_tuned',
           'load_tuned', 'seal', 'verify']




def check_backbone(digest: str, want: str | None, source: str, backbone_ckpt: str,
                   tuned_on: str | None, *, allow_other_backbone: bool) -> None:
  """Raises unless `digest` (`tree.digest` of the loaded backbone) is `want`, the digest recorded
  with the prompts of `source`; a source recording none is refused too. `allow_other_backbone`
  lets both through (the caller records that it did)."""
  if allow_other_backbone:
    return
  if want is None:
    raise ExportError(
        f'{source} records no backbone_digest: cannot check that {backbone_ckpt!r} is the '
        'backbone it was tuned on. Export it again, or pass allow_other_backbone=True '
        '(--allow_other_backbone) to load it anyway.')
  if digest != want:
    raise BackboneMismatchError(
        f'{source} was tuned on backbone {want[:16]}... ({tuned_on!r}), but {backbone_ckpt!r} '
        f'holds other weights ({digest[:16]}...): its prompts and head would give wrong '
        'predictions. Load the weights it was tuned on, or pass allow_other_backbone=True '
        '(--allow_other_backbone) to use these anyway.')


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
  method = base.get(config.method)
  arch = method.arch(config)
  backbone = backbone_lib.load(method, config, arch)
  check_backbone(tree.digest(backbone), meta.get('backbone_digest'), tuned_ckpt, backbone_ckpt,
                 meta.get('backbone_checkpoint'), allow_other_backbone=allow_other_backbone)
  tuned = ocp.StandardCheckpointer().restore(os.path.join(tuned_ckpt, 'params'))
  model = method.build(config, meta['num_classes'], prepared, arch)
  return model, tree.merge(tuned, backbone), config
