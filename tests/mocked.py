"""Mocked data and weights for end-to-end tests: VTAB tasks through `tfds.testing.mock_data` (each
task's real TFDS features: class count, image shape and dtype, label transforms), VPT-style FGVC
folders, a CoOp-style few-shot set, and a random micro backbone written in the original .npz layout
and in the timm / MAE layout."""

from __future__ import annotations

import contextlib
import functools
import gzip
import json
import os

import numpy as np

FGVC_CLASSES = {'cub': 200, 'nabirds': 555, 'oxford_flowers': 102, 'stanford_dogs': 120,
                'stanford_cars': 196}
FGVC_IMAGE_ROOT = {'cub': 'images', 'nabirds': 'images', 'stanford_dogs': 'Images'}


# TFDS datasets whose random mock examples cannot be encoded (boxes with min > max, object lists of
# unequal lengths).
MOCK_CANNOT_ENCODE = ('clevr', 'kitti', 'oxford_iiit_pet')


@contextlib.contextmanager
def mocked_vtab(num_examples: int):
  """Every VTAB split reads `num_examples` mock examples (and declares that size)."""
  import tensorflow_datasets as tfds
  from tensorflow_datasets.testing import mocking

  from prompt_jax.data import vtab
  saved = (vtab.base_split_sizes, vtab.split_size, mocking.RandomFakeGenerator, vtab.as_dataset)
  vtab.base_split_sizes = lambda b: {'train': 10000, 'validation': 500, 'test': 600}
  vtab.split_size = lambda spec, sizes: num_examples

  def as_dataset(builder, split):
    # With decoders the mock encodes its random examples, which it cannot do for random boxes /
    # object lists: those datasets are read without our image decoder (tested on its own in
    # tests/data/test_folder.py and test_preprocess.py).
    if builder.name in MOCK_CANNOT_ENCODE:
      return builder.as_dataset(split=split, shuffle_files=False)
    return saved[3](builder, split)

  vtab.as_dataset = as_dataset
  # Dynamic dims (variable image sizes, object lists) get length 10, so object lists stay
  # consistent across fields (kitti) instead of independent random lengths.
  mocking.RandomFakeGenerator = functools.partial(saved[2], constant_dynamic_shape=True)
  try:
    with tfds.testing.mock_data(num_examples=num_examples,
                                policy=tfds.testing.MockPolicy.USE_CODE):
      yield
  finally:
    (vtab.base_split_sizes, vtab.split_size, mocking.RandomFakeGenerator,
     vtab.as_dataset) = saved


def micro_params(variant: str = 'Mu/8', image_size: int = 32, seed: int = 0
                 ) -> dict[str, np.ndarray]:
  """Random backbone weights {flat .npz key: array} (LeCun-normal kernels, unit LayerNorm scales,
  zero biases); shapes from the model without compiling it."""
  import jax
  from prompt_jax.checkpoints import backbone
  from prompt_jax.models import arch
  from prompt_jax.util import tree
  from prompt_jax.configs import common
  cfg = common.base()  # every model field at its default
  cfg.model.update(variant=variant, head_init='zeros')
  cfg.data.image_size = image_size
  model = backbone.build_vit(cfg, arch.decode(variant), 0, None)
  shapes = tree.flat(jax.eval_shape(model.init, jax.random.PRNGKey(0),
                                    backbone.dummy_images(cfg))['params'])
  rng = np.random.default_rng(seed)
  out = {}
  for k, s in sorted(shapes.items()):
    shape = tuple(s.shape)
    if k.endswith('scale'):
      out[k] = np.ones(shape, np.float32)
    elif k.endswith('bias'):
      out[k] = np.zeros(shape, np.float32)
    else:
      fan_in = (shape[0] * shape[1] if k.endswith('out/kernel') else
                int(np.prod(shape[:3])) if len(shape) == 4 else shape[0])
      std = 0.02 if k in ('cls', 'Transformer/posembed_input/pos_embedding') else fan_in ** -0.5
      out[k] = (std * rng.standard_normal(shape)).astype(np.float32)
  return out


def save_npz(flat: dict[str, np.ndarray], path: str) -> str:
  np.savez(path, **flat)
  return path


def save_timm_npz(flat: dict[str, np.ndarray], path: str) -> str:
  """The same weights as a flat timm-style state dict (`cls_token`, `blocks.i.attn.qkv`, ...),
  readable with init.format 'timm', 'mae' or 'mocov3'. Written from spec 01's key table."""
  sd = {'cls_token': flat['cls'],
        'pos_embed': flat['Transformer/posembed_input/pos_embedding'],
        'patch_embed.proj.weight': flat['embedding/kernel'].transpose(3, 2, 0, 1),
        'patch_embed.proj.bias': flat['embedding/bias'],
        'norm.weight': flat['Transformer/encoder_norm/scale'],
        'norm.bias': flat['Transformer/encoder_norm/bias']}
  i = 0
  while f'Transformer/encoderblock_{i}/LayerNorm_0/scale' in flat:
    b = f'Transformer/encoderblock_{i}/'
    mha = b + 'MultiHeadDotProductAttention_1/'
    d = flat[mha + 'query/kernel'].shape[0]
    parts = ('query', 'key', 'value')
    t = f'blocks.{i}.'
    sd.update({
        t + 'norm1.weight': flat[b + 'LayerNorm_0/scale'],
        t + 'norm1.bias': flat[b + 'LayerNorm_0/bias'],
        t + 'attn.qkv.weight': np.concatenate([flat[f'{mha}{p}/kernel'].reshape(d, d).T
                                               for p in parts]),
        t + 'attn.qkv.bias': np.concatenate([flat[f'{mha}{p}/bias'].reshape(d) for p in parts]),
        t + 'attn.proj.weight': flat[mha + 'out/kernel'].reshape(d, d).T,
        t + 'attn.proj.bias': flat[mha + 'out/bias'],
        t + 'norm2.weight': flat[b + 'LayerNorm_2/scale'],
        t + 'norm2.bias': flat[b + 'LayerNorm_2/bias'],
        t + 'mlp.fc1.weight': flat[b + 'MlpBlock_3/Dense_0/kernel'].T,
        t + 'mlp.fc1.bias': flat[b + 'MlpBlock_3/Dense_0/bias'],
        t + 'mlp.fc2.weight': flat[b + 'MlpBlock_3/Dense_1/kernel'].T,
        t + 'mlp.fc2.bias': flat[b + 'MlpBlock_3/Dense_1/bias']})
    i += 1
  np.savez(path, **sd)
  return path


def micro_checkpoints(folder: str) -> dict[str, str]:
  """{init.format: path} for one random Mu/8 backbone."""
  flat = micro_params()
  npz = save_npz(flat, os.path.join(folder, 'mu8.npz'))
  timm = save_timm_npz(flat, os.path.join(folder, 'mu8_timm.npz'))
  return {'npz': npz, 'timm': timm, 'mae': timm, 'mocov3': timm}


def fgvc_folders(root: str, val: int = 8, test: int = 16) -> str:
  """VPT-style FGVC folders <root>/<task>/{train,val,test}.json (relative path -> raw label) plus
  12x16 PNGs, with each dataset's real class count (train holds every class once)."""
  from PIL import Image
  rng = np.random.default_rng(0)
  for task, classes in FGVC_CLASSES.items():
    image_root = os.path.join(root, task, FGVC_IMAGE_ROOT.get(task, ''))
    os.makedirs(image_root, exist_ok=True)
    for split, labels in (('train', range(classes)), ('val', range(val)),
                          ('test', range(val, val + test))):
      entries = {}
      for i, y in enumerate(labels):
        rel = f'{split}_{i}.png'
        Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(
            os.path.join(image_root, rel))
        entries[rel] = 3 * int(y) + 1  # raw ids; the reader remaps them to 0..C-1
      with open(os.path.join(root, task, f'{split}.json'), 'w') as f:
        json.dump(entries, f)
  return root


def fewshot_assets(folder: str) -> dict[str, str]:
  """A CoOp-style split file + image folder over 4 classes, class descriptions, a BPE vocabulary
  and a tiny CLIP in the Hugging Face safetensors layout (config variant 'test_tiny/8')."""
  from PIL import Image
  from safetensors.numpy import save_file

  from prompt_jax.models import clip
  from prompt_jax.text import tokenizer as tok_lib
  from tests import clip_helpers
  classes = ['cat', 'dog', 'red_bird', 'fish']
  descriptions = {'cat': ['pointy ears', 'whiskers, and a long tail.'],
                  'dog': ['a wet nose', 'floppy ears'],
                  'red bird': ['red feathers', 'a beak', 'two wings'],
                  'fish': ['fins and scales']}
  merges = [('a', 'n'), ('t', 'h'), ('e', 'r'), ('p', 'h'), ('ph', 'o'), ('t', 'o</w>'),
            ('o', 'f</w>'), ('i', 'n')]
  clip.VARIANTS['test_tiny/8'] = dict(
      embed_dim=16, image_size=32, patch_size=8, vision_width=32, vision_layers=2,
      vision_heads=4, context_length=40, vocab_size=560, text_width=32, text_layers=2,
      text_heads=4)
  with gzip.open(os.path.join(folder, tok_lib.VOCAB_FILE), 'wt', encoding='utf-8') as f:
    f.write('#version: 0.2\n' + '\n'.join(f'{a} {b}' for a, b in merges) + '\n')
  with open(os.path.join(folder, 'desc.json'), 'w') as f:
    json.dump(descriptions, f)
  rng = np.random.default_rng(0)
  split = {'train': [], 'val': [], 'test': []}
  os.makedirs(os.path.join(folder, 'images'), exist_ok=True)
  for c, name in enumerate(classes):
    for i in range(8):
      rel = f'{name}_{i}.png'
      img = np.clip(rng.normal(60 * c + 40, 30, size=(40, 48, 3)), 0, 255).astype(np.uint8)
      Image.fromarray(img).save(os.path.join(folder, 'images', rel))
      split['train' if i < 5 else ('val' if i == 5 else 'test')].append([rel, c, name])
  with open(os.path.join(folder, 'split.json'), 'w') as f:
    json.dump(split, f)
  hf = clip_helpers.hf_model(seed=0, context_length=40, vocab_size=560)
  weights = os.path.join(folder, 'model.safetensors')
  save_file(clip_helpers.hf_state_numpy(hf), weights)
  return {'weights': weights, 'descriptions': os.path.join(folder, 'desc.json'),
          'split_file': os.path.join(folder, 'split.json'),
          'images': os.path.join(folder, 'images')}
