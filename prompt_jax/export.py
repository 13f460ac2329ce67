"""Standalone export of tuned prompts (+ head) and their reload for inference.

  export_tuned(dir, trainable, frozen, config, prepared)   # written by the trainer as workdir/tuned
  model, params, config = load_tuned('ViT-B_16.npz', dir)  # any process, no workdir needed
  logits, _ = model.apply({'params': params}, images)

Layout of `dir`: params/ (orbax checkpoint of the trainable subtree plus the non-trained prompt
constants under 'prompt/', e.g. SHIP's prototype bank), config.json, meta.json, prepared.pkl.
"""

from __future__ import annotations

import json
import os
import pickle
from typing import Any

import flax
from flax import traverse_util
import jax
import ml_collections
import orbax.checkpoint as ocp


def _flat(tree):
  return traverse_util.flatten_dict(flax.core.unfreeze(tree), sep='/')


def export_tuned(path: str, trainable: Any, frozen: Any, config: ml_collections.ConfigDict,
                 prepared: Any) -> str:
  """Writes the tuned subtree; returns `path`."""
  path = os.path.abspath(path)
  tuned = {**{k: v for k, v in _flat(frozen).items() if k.startswith('prompt/')},
           **_flat(trainable)}
  nested = traverse_util.unflatten_dict(tuned, sep='/')
  ckptr = ocp.StandardCheckpointer()
  ckptr.save(os.path.join(path, 'params'), nested, force=True)
  ckptr.wait_until_finished()
  with open(os.path.join(path, 'config.json'), 'w') as f:
    f.write(config.to_json(indent=1))
  head = tuned.get('head/kernel')
  with open(os.path.join(path, 'meta.json'), 'w') as f:
    json.dump({'num_classes': int(head.shape[-1]) if head is not None else 0,
               'keys': sorted(tuned)}, f, indent=1)
  with open(os.path.join(path, 'prepared.pkl'), 'wb') as f:
    pickle.dump(prepared, f)
  return path


def load_tuned(backbone_ckpt: str, tuned_ckpt: str, *, backbone_format: str | None = None
               ) -> tuple[Any, dict[str, Any], ml_collections.ConfigDict]:
  """Rebuilds the tuned model: backbone weights from `backbone_ckpt` + the exported subtree.

  backbone_ckpt: path of the original weights ('' to use the seeded random init recorded in the
  config, for tests). Returns (model, params, config).
  """
  from prompt_jax import train  # pylint: disable=g-import-not-at-top
  from prompt_jax.methods import base  # pylint: disable=g-import-not-at-top
  tuned_ckpt = os.path.abspath(tuned_ckpt)
  with open(os.path.join(tuned_ckpt, 'config.json')) as f:
    config = ml_collections.ConfigDict(json.load(f))
  with open(os.path.join(tuned_ckpt, 'meta.json')) as f:
    meta = json.load(f)
  with open(os.path.join(tuned_ckpt, 'prepared.pkl'), 'rb') as f:
    prepared = pickle.load(f)
  config.init.checkpoint = backbone_ckpt
  if backbone_format:
    config.init.format = backbone_format
  method = base.get(config.method)
  rng_backbone = jax.random.split(jax.random.PRNGKey(config.seed))[0]
  backbone = train.load_backbone(method, config, rng_backbone)
  tuned = ocp.StandardCheckpointer().restore(os.path.join(tuned_ckpt, 'params'))
  model = method.model(config, meta['num_classes'], prepared)
  params = {**_flat(backbone), **_flat(tuned)}
  return model, traverse_util.unflatten_dict(params, sep='/'), config
