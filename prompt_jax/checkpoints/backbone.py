"""Model construction and backbone weights: the one place that builds a model and fills it.

  model = backbone.build_vit(config, arch, num_classes, prompter) # ViT of config.model
  params = backbone.load(method, config)                          # frozen prompt-free backbone
  params = backbone.init_with(model, config, params)              # + fresh prompt/head params

The backbone is explicit: `config.init.checkpoint` names the weights file, or 'random' for a seeded
random init (the demo's pretraining, tests); empty is an error saying where the weights come from
(`WEIGHTS`). The random streams are fixed by `config.seed` (`rngs`), so the trainer,
`export.load_tuned` and the base-to-novel evaluation rebuild the same params from the same config.
"""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from prompt_jax import checkpoints
from prompt_jax.util import tree
from prompt_jax.models import arch as arch_lib
from prompt_jax.models import vit

Config = ml_collections.ConfigDict

RANDOM = 'random'
# Where each format's usual weights come from (named by the error for an empty init.checkpoint).
WEIGHTS = {
    'npz': 'ViT-B_16.npz (ImageNet-21k), public at gs://vit_models/imagenet21k/ViT-B_16.npz: '
           '`gsutil cp gs://vit_models/imagenet21k/ViT-B_16.npz .` or `curl -O '
           'https://storage.googleapis.com/vit_models/imagenet21k/ViT-B_16.npz`',
    'mae': 'mae_pretrain_vit_base.pth of the MAE release (github.com/facebookresearch/mae)',
    'mocov3': 'linear-vit-b-300ep.pth.tar of the MoCo v3 release '
              '(github.com/facebookresearch/moco-v3)',
    'timm': 'a timm ViT state dict (.pth, .safetensors or .npz)',
    'clip_openai': "ViT-B-16.pt of OpenAI's CLIP release (github.com/openai/CLIP)",
    'clip_hf': 'model.safetensors of openai/clip-vit-base-patch16 (Hugging Face Hub)',
}


def missing_checkpoint_message(config: Config) -> str:
  """The error for an empty `config.init.checkpoint`: where the weights come from."""
  fmt = config.init.format
  where = WEIGHTS.get(fmt, f'a checkpoint in format {fmt!r}')
  return (f'config.init.checkpoint is empty: name the backbone weights, e.g. {where}, then pass '
          f'--config.init.checkpoint=<path> --config.init.format={fmt} (formats: '
          f'{", ".join(sorted(WEIGHTS))}). To train on a randomly initialised backbone on '
          f"purpose, pass --config.init.checkpoint={RANDOM}.")


def build_vit(config: Config, arch: arch_lib.Arch, num_classes: int,
              prompter: nn.Module | None) -> vit.VisionTransformer:
  """The ViT of `arch` and `config.model` with `prompter` attached (num_classes 0: no head)."""
  m = config.model
  return vit.VisionTransformer(
      **arch.constructor_kwargs(), num_classes=num_classes, prompt=prompter,
      drop_path=m.drop_path, act=m.act, ln_eps=m.ln_eps, pool=m.pool, head_init=m.head_init,
      head_init_std=m.head_init_std, head_bias_init=m.head_bias_init, attention=m.attention,
      dtype=jnp.dtype(m.compute_dtype), remat=m.get('remat', False))


def backbone_model(method: Any, config: Config, arch: arch_lib.Arch | None = None) -> nn.Module:
  """The prompt-free, head-free model whose params the checkpoint fills (`arch`: the run's, else
  decoded from the config by `method.arch`)."""
  arch = arch or method.arch(config)
  if method.model.build_backbone is not None:
    return method.model.build_backbone(config, arch)
  return build_vit(config, arch, 0, None)


def dummy_images(config: Config) -> jax.Array:
  s = config.data.image_size
  return jnp.zeros((1, s, s, 3), jnp.float32)


def rngs(config: Config) -> tuple[jax.Array, jax.Array]:
  """(backbone init rng, prompt/head init rng) from `config.seed`."""
  r_backbone, r_model = jax.random.split(jax.random.PRNGKey(config.seed))
  return r_backbone, r_model


def load(method: Any, config: Config, arch: arch_lib.Arch | None = None) -> dict[str, Any]:
  """The backbone's nested params: `config.init.checkpoint` in `config.init.format` (every key and
  shape validated, every value finite), or a seeded random init for `checkpoint='random'`."""
  model = backbone_model(method, config, arch)
  r_backbone, _ = rngs(config)
  path = config.init.checkpoint
  if not path:
    raise checkpoints.CheckpointError(missing_checkpoint_message(config))
  if path == RANDOM:
    return flax.core.unfreeze(jax.jit(model.init)(r_backbone, dummy_images(config))['params'])
  shapes = jax.eval_shape(lambda: model.init(r_backbone, dummy_images(config)))['params']
  expected = {k: v.shape for k, v in tree.flat(shapes).items()}
  flat = checkpoints.load_backbone(config, expected)
  bad = sorted(k for k, v in flat.items() if not np.isfinite(v).all())
  if bad:
    raise checkpoints.CheckpointError(
        f'checkpoint {path} ({config.init.format}) holds NaN / inf values in {len(bad)} '
        f'tensor(s): {bad[:10]}; the file is damaged or not a trained model')
  return tree.nest({k: jnp.asarray(v) for k, v in flat.items()})


def init_with(model: nn.Module, config: Config, backbone_params: Any) -> dict[str, Any]:
  """Fresh params of `model` (prompts, head) with the backbone's params written over them.

  Only the params the backbone does not fill are computed: flax draws each param from its own
  path's rng, so they equal a full init's, and the backbone's random init is dead code that XLA
  drops (a quarter of the compile time on Mu/8, and no random ViT-B/16 drawn to be overwritten)."""
  _, r_model = rngs(config)
  flat_bb = tree.flat(backbone_params)
  names: list[str] = []  # every param of the model, recorded while tracing

  def fresh(rng: jax.Array, images: jax.Array) -> dict[str, jax.Array]:
    flat = tree.flat(model.init(rng, images)['params'])
    names.extend(flat)
    return {k: v for k, v in flat.items() if k not in flat_bb}

  params = jax.jit(fresh)(r_model, dummy_images(config))
  missing = sorted(set(flat_bb) - set(names))
  if missing:
    raise ValueError(f'the model has no place for backbone params {missing[:10]}')
  params.update(flat_bb)
  return tree.nest(params)
