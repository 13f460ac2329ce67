"""The Python API: a prompted ViT from a backbone checkpoint, its trainable split, and the images
the training pipeline would give.

  model, params = prompt_jax.create_model('B/16', 'vpt', checkpoint='ViT-B_16.npz',
                                          num_classes=100, num_prompts=50, deep=True)
  trainable, frozen = prompt_jax.split_params(params, 'vpt')   # what the trainer trains
  images = prompt_jax.preprocess(uint8_images, 'configs/vpt_vtab.py')  # or a ConfigDict
  logits, out = model.apply({'params': params}, images)          # train=False by default

`create_model` builds the config a config file would (configs/common.py's defaults, the method's
section with `method_options` applied) and goes through the trainer's own code: backbone.load (every
checkpoint key and shape validated), backbone.init_with, the method's init_params.
"""

from __future__ import annotations

from collections.abc import Mapping
import os
from typing import Any

import flax.linen as nn
import ml_collections
import numpy as np

from prompt_jax.checkpoints import backbone as backbone_lib
from prompt_jax.util import tree
from prompt_jax.util import treeio
from prompt_jax.configs import common
from prompt_jax.data import preprocess as preprocess_lib
from prompt_jax.methods import base


def model_config(variant: str = 'B/16', method: str = common.DEFAULT_METHOD, *,
                 checkpoint: str = '', checkpoint_format: str = 'npz', image_size: int = 224,
                 seed: int = 0, overrides: Mapping[str, Any] | None = None, **method_options: Any
                 ) -> ml_collections.ConfigDict:
  """The locked config `create_model` builds from. `method_options` set fields of the method's
  section (`Method.config_section`, built by `Method.section`: `config.vpt`, `.ship`, ...);
  `overrides` any field by dotted name ({'model.pool': 'mean_norm'})."""
  c = common.base()
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
    common.set_field(c, dotted, value)
  return common.finalize(c)


def create_model(variant: str, method: str = common.DEFAULT_METHOD, *, num_classes: int,
                 checkpoint: str, checkpoint_format: str = 'npz', image_size: int = 224,
                 seed: int = 0, prepared: Any = None, overrides: Mapping[str, Any] | None = None,
                 **method_options: Any) -> tuple[nn.Module, dict[str, Any]]:
  """A prompted model and its full params, ready to apply or train.

  variant: 'B/16', 'S/16', ... (`config.model.variant`); method: a registered method
  (`base.METHODS.names()`; default `configs/common.py` DEFAULT_METHOD); num_classes: head size;
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
  if m.prepare is not None and prepared is None:
    raise ValueError(
        f'method {method!r} derives state from the training data before its model exists; pass '
        f'prepared= (the path of a run\'s workdir/prepared.npz), or build from a config and data '
        f'with prompt_jax.train.trainer.build(config, workdir).')
  if isinstance(prepared, (str, os.PathLike)):
    prepared = treeio.load(os.fspath(prepared))['value']
  model = m.model(config, num_classes, prepared)
  params = backbone_lib.init_with(model, config, backbone_lib.load(m, config))
  return model, m.init_params(params, prepared, config)


def split_params(params: Any, method: str = common.DEFAULT_METHOD, **method_options: Any
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
  """(trainable, frozen) halves of `params` as the trainer splits them for `method` (its options
  matter where they change the trainable set, e.g. DA-VPT's train_k_bias);
  `prompt_jax.util.tree.merge(trainable, frozen)` puts them back together."""
  config = model_config(method=method, **method_options)
  return tree.split(params, *base.get(method).trainable_patterns(config))


# ------------------------------------------------------------------ preprocessing


def _tf_image(image: np.ndarray, data: ml_collections.ConfigDict) -> np.ndarray:
  from prompt_jax.data import pipeline  # the sources' own options: resize_to, antialias, ...
  o = pipeline.ImageOptions.from_config(data)
  return np.asarray(preprocess_lib.resize_crop(image, o.image_size, o.resize, o.crop_pct,
                                               o.resize_to, o.antialias))


def _fewshot_image(image: np.ndarray, data: ml_collections.ConfigDict) -> np.ndarray:
  from PIL import Image
  from prompt_jax.data import fewshot
  rgb = Image.fromarray(image if image.shape[-1] == 3 else image[..., 0]).convert('RGB')
  return np.asarray(fewshot.resize_center_crop(rgb, int(data.image_size)), np.float32) / 255.0


def _digits_image(image: np.ndarray, data: ml_collections.ConfigDict) -> np.ndarray:
  import jax
  x = image.astype(np.float32)[..., :1] / 255.0
  s = int(data.image_size)
  x = np.asarray(jax.image.resize(x, (s, s, 1), 'bilinear'))
  return np.clip(np.repeat(x, 3, axis=-1), 0.0, 1.0)


# data source -> its evaluation image path: uint8 [H, W, C] -> float32 [S, S, 3] in [0, 1]
EVAL_IMAGE = {'vtab': _tf_image, 'folder': _tf_image, 'fewshot': _fewshot_image,
              'digits': _digits_image}


def preprocess(images: Any, config: ml_collections.ConfigDict | str, *,
               image_size: int | None = None) -> np.ndarray:
  """Images as the evaluation pipeline of `config.data.source` gives them to the model.

  images: uint8 [H, W, C] or [B, H, W, C], or a sequence of uint8 [H, W, C] of any sizes
  (C = 1 or 3; PIL images work through np.asarray) in [0, 255], as decoded from image files.
  config: a run's config (`load_tuned` returns it), its `data` section, or a config file spec
  ('configs/vpt_vtab.py:task=dtd'). Uses data.source, image_size, resize, resize_to, crop_pct,
  antialias and normalization, as the source does; no augmentation. image_size: the model's input
  side S when it differs from the config's (the `image_size` given to `create_model`); default
  data.image_size. Returns float32 [S, S, 3] or [B, S, S, 3].
  """
  if isinstance(config, str):
    from prompt_jax.util import config_files
    config = config_files.load(config)
  data = config.data if 'data' in config else config
  if image_size is not None and int(image_size) != int(data.image_size):
    data = ml_collections.ConfigDict(data.to_dict())
    data.image_size = int(image_size)
  if data.source not in EVAL_IMAGE:
    raise ValueError(f'preprocess knows the image paths of sources {sorted(EVAL_IMAGE)}, not '
                     f'{data.source!r}')
  single = isinstance(images, np.ndarray) and images.ndim == 3
  batch = [images] if single else list(images)
  out = []
  for image in batch:
    image = np.asarray(image)
    if image.ndim == 2:
      image = image[..., None]
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (1, 3):
      raise ValueError(
          f'preprocess takes uint8 [H, W, 1 or 3] images in [0, 255] (as decoded from files); '
          f'got {image.dtype} {image.shape}. Float images are ambiguous ([0, 1] or [0, 255]): '
          'convert with (x * 255).round().astype(np.uint8) or x.astype(np.uint8).')
    x = EVAL_IMAGE[data.source](image, data)
    out.append(preprocess_lib.normalize(x, data.normalization).astype(np.float32))
  return out[0] if single else np.stack(out)

