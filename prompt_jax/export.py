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

import jax
import ml_collections
import orbax.checkpoint as ocp

from prompt_jax import backbone as backbone_lib
from prompt_jax import tree
from prompt_jax.methods import base


def export_tuned(path: str, trainable: Any, frozen: Any, config: ml_collections.ConfigDict,
                 prepared: Any) -> str:
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
  backbone = backbone_lib.load(method, config)
  tuned = ocp.StandardCheckpointer().restore(os.path.join(tuned_ckpt, 'params'))
  model = method.model(config, meta['num_classes'], prepared)
  return model, tree.merge(tuned, backbone), config
