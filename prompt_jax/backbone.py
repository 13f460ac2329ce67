"""Model construction and backbone weights: the one place that builds a model and fills it.

  model = backbone.build_vit(config, num_classes, prompter)       # ViT of config.model
  params = backbone.load(method, config)                          # frozen prompt-free backbone
  params = backbone.init_with(model, config, params)              # + fresh prompt/head params

The random streams are fixed by `config.seed` (`rngs`), so the trainer, `export.load_tuned` and the
base-to-novel evaluation rebuild the same params from the same config.
"""

from __future__ import annotations

from typing import Any

from absl import logging
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from prompt_jax import checkpoints
from prompt_jax import tree
from prompt_jax.models import vit

Config = ml_collections.ConfigDict


def build_vit(config: Config, num_classes: int, prompter: nn.Module | None
              ) -> vit.VisionTransformer:
  """The ViT of `config.model` with `prompter` attached (num_classes 0: no head)."""
  m = config.model
  return vit.VisionTransformer(
      **vit.decode_variant(m.variant), num_classes=num_classes, prompt=prompter,
      drop_path=m.drop_path, act=m.act, ln_eps=m.ln_eps, pool=m.pool, head_init=m.head_init,
      head_init_std=m.head_init_std, head_bias_init=m.head_bias_init, attention=m.attention,
      dtype=jnp.dtype(m.compute_dtype))


def backbone_model(method: Any, config: Config) -> nn.Module:
  """The prompt-free, head-free model whose params the checkpoint fills."""
  if method.build_backbone is not None:
    return method.build_backbone(config)
  return build_vit(config, 0, None)


def dummy_images(config: Config) -> jax.Array:
  s = config.data.image_size
  return jnp.zeros((1, s, s, 3), jnp.float32)


def rngs(config: Config) -> tuple[jax.Array, jax.Array]:
  """(backbone init rng, prompt/head init rng) from `config.seed`."""
  r_backbone, r_model = jax.random.split(jax.random.PRNGKey(config.seed))
  return r_backbone, r_model


def load(method: Any, config: Config) -> dict[str, Any]:
  """The backbone's nested params: `config.init.checkpoint` in `config.init.format` (every key and
  shape validated), or a seeded random init when no checkpoint is given (tests, demos)."""
  model = backbone_model(method, config)
  r_backbone, _ = rngs(config)
  if not config.init.checkpoint:
    logging.warning('config.init.checkpoint is empty: the backbone is randomly initialised')
    return flax.core.unfreeze(jax.jit(model.init)(r_backbone, dummy_images(config))['params'])
  shapes = jax.eval_shape(lambda: model.init(r_backbone, dummy_images(config)))['params']
  expected = {k: v.shape for k, v in tree.flat(shapes).items()}
  flat = checkpoints.load_backbone(config, expected)
  return tree.nest({k: jnp.asarray(v) for k, v in flat.items()})


def init_with(model: nn.Module, config: Config, backbone_params: Any) -> dict[str, Any]:
  """Fresh params of `model` (prompts, head) with the backbone's params written over them."""
  _, r_model = rngs(config)
  params = tree.flat(jax.jit(model.init)(r_model, dummy_images(config))['params'])
  flat_bb = tree.flat(backbone_params)
  missing = sorted(set(flat_bb) - set(params))
  if missing:
    raise ValueError(f'the model has no place for backbone params {missing[:10]}')
  params.update(flat_bb)
  return tree.nest(params)
