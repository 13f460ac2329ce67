"""The Python API: a prompted ViT from a backbone checkpoint, its trainable split, and the images
the training pipeline would give.

  model, params = prompt_jax.create_model('B/16', 'vpt', checkpoint='ViT-B_16.npz',
                                          num_classes=100, num_prompts=50, deep=True)
  trainable, frozen = prompt_jax.split_params(params, 'vpt')   # what the trainer trains
  images = prompt_jax.preprocess(uint8_images, 'configs/vpt_vtab.py')  # or a ConfigDict
  logits, out = model.apply({'params': params}, images)          # train=False by default

`create_model` builds the config a config file would (prompt_jax.util.config's defaults, the
method's section with `method_options` applied) and goes through the trainer's own code:
backbone.load (every checkpoint key and shape validated), backbone.init_with, the method's
init_params.
"""

from __future__ import annotations

from collections.abc import Mapping
import os
from typing import Any

import flax.linen as nn
import ml_collections

from prompt_jax.checkpoints import backbone as backbone_lib
from prompt_jax.util import tree
from prompt_jax.util import treeio
from prompt_jax.util import config as config_lib
from prompt_jax.data.eval_image import preprocess
from prompt_jax.methods import base


def model_config(variant: str = 'B/16', method: str = config_lib.DEFAULT_METHOD, *,
                 checkpoint: str = '', checkpoint_format: str = 'npz', image_size: int = 224,
                 seed: int = 0, overrides: Mapping[str, Any] | None = None, **method_options: Any
                 ) -> ml_collections.ConfigDict:
  """The locked config `create_model` builds from. `method_options` set fields of the method's
  section (`Method.config_section`, built by `Method.section`: `config.vpt`, `.ship`, ...);
  `overrides` any field by dotted name ({'model.pool': 'mean_norm'})."""
  c = config_lib.base()
  c.method, c.seed = method, seed
  c.model.variant = variant
  c.init.update(checkpoint=checkpoint, format=checkpoint_format)
  c.data.image_size = image_size
  m = base.get(method)
  name = m.config_section
  if name:
    if m.section is None:
      raise TypeError(f'method {method!r} reads config.{name} but declares no Method.section '
                      'to build it from')
    c[name] = m.section()
  known = sorted(c[name]) if name else []
  unknown = sorted(set(method_options) - set(known))
  if unknown:
    raise TypeError(f'unknown option(s) {unknown} for method {method!r}; its options '
                    f'(config.{name}) are {known}' if name else
                    f'method {method!r} takes no options, got {unknown}')
  if name:
    c[name].update(method_options)
  for dotted, value in (overrides or {}).items():
    config_lib.set_field(c, dotted, value)
  return config_lib.finalize(c)


def create_model(variant: str, method: str = config_lib.DEFAULT_METHOD, *, num_classes: int,
                 checkpoint: str, checkpoint_format: str = 'npz', image_size: int = 224,
                 seed: int = 0, prepared: Any = None, overrides: Mapping[str, Any] | None = None,
                 **method_options: Any) -> tuple[nn.Module, dict[str, Any]]:
  """A prompted model and its full params, ready to apply or train.

  variant: 'B/16', 'S/16', ... (`config.model.variant`); method: a registered method
  (`base.METHODS.names()`; default `util.config.DEFAULT_METHOD`); num_classes: head size;
  checkpoint (required): backbone weights in `checkpoint_format` ('npz', 'timm', 'mae', 'mocov3',
  'clip_openai', 'clip_hf'), or 'random' for a seeded random backbone on purpose; image_size:
  input side S;
  seed: prompt/head init (as `config.seed`). prepared: the preparation result of methods that
  derive state from training data (SHIP anchors and prototype bank, DA-VPT clusters, SPT
  prototypes, SAP descriptions): the path of a run's workdir/prepared.npz, or the tree read from
  it. Returns (model, params); model.apply({'params': params}, images[B, S, S, 3]) ->
  (logits [B, num_classes], aux dict).
  """
  config = model_config(variant, method, checkpoint=checkpoint,
                        checkpoint_format=checkpoint_format, image_size=image_size, seed=seed,
                        overrides=overrides, **method_options)
  m = base.get(method)
  if m.recipe.prepare is not None and prepared is None:
    raise ValueError(
        f'method {method!r} derives state from the training data before its model exists; pass '
        f'prepared= (the path of a run\'s workdir/prepared.npz), or build from a config and data '
        f'with prompt_jax.train.trainer.build(config, workdir).')
  if isinstance(prepared, (str, os.PathLike)):
    prepared = treeio.load(os.fspath(prepared))['value']
  arch = m.arch(config)
  model = m.build(config, num_classes, prepared, arch)
  params = backbone_lib.init_with(model, config, backbone_lib.load(m, config, arch))
  return model, m.model.init_params(params, prepared, config)


def split_params(params: Any, method: str = config_lib.DEFAULT_METHOD, **method_options: Any
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
  """(trainable, frozen) halves of `params` as the trainer splits them for `method` (its options
  matter where they change the trainable set, e.g. DA-VPT's train_k_bias);
  `prompt_jax.util.tree.merge(trainable, frozen)` puts them back together."""
  config = model_config(method=method, **method_options)
  return tree.split(params, *base.get(method).trainable_patterns(config))


__all__ = ['create_model', 'model_config', 'preprocess', 'split_params']
