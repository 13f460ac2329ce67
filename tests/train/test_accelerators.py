"""Accelerator readiness without the hardware: the trainer's train step (device-cached input) and
eval step of every method lower for TPU and CUDA with `jax.export`, in bf16 compute (SAP, on the
few-shot host path: its host-batch train step)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import micro_config
from methods.test_sap import CLASSES, _prepared_model, assets, tiny_config  # noqa: F401
from prompt_jax.train import optim
from prompt_jax.train import steps
from prompt_jax.train import trainer as train
from prompt_jax.util import tree
from prompt_jax.configs import common

PLATFORMS = ('tpu', 'cuda')
SECTIONS = {
    'ship': lambda: common.ship(num_prompts=4, threshold=0.9, num_prototypes=8, kmeans_n_init=1,
                                max_images=64),
    'davpt': lambda: common.davpt(num_proxies=3, num_other=2, proxy_start=3, proxy_end=3),
}


def _config(method):
  c = micro_config(method)
  c.unlock()
  c.model.compute_dtype = 'bfloat16'
  c.data.update(cache_dtype='uint8', augment=True)
  if method in SECTIONS:
    c[method] = SECTIONS[method]()
  c.lock()
  return c


def _bf16_matmuls(exported) -> tuple[int, int]:
  """(matmuls with a bf16 operand, all matmuls) in an exported module."""
  dots = re.findall(r'stablehlo\.dot_general.*', exported.mlir_module())
  return sum('bf16' in d for d in dots), len(dots)


def _check(exported) -> None:
  assert exported.platforms == PLATFORMS
  bf16, total = _bf16_matmuls(exported)
  assert total and bf16 >= total // 2, f'{bf16} of {total} matmuls in bf16'


def _shapes(tree_):
  return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(np.shape(x), jnp.asarray(x).dtype),
                                tree_)


@pytest.mark.slow
@pytest.mark.parametrize('method', ['vpt', 'linear', 'full', 'ship', 'davpt', 'spt'])
def test_train_and_eval_steps_lower_for_tpu_and_cuda_in_bf16(method, tmp_path):
  cfg = _config(method)
  setup = train.build(cfg, str(tmp_path))
  trainable, frozen = tree.split(setup.params, *setup.method.trainable_patterns(cfg))
  tx, _ = optim.make_optimizer(cfg.train, trainable, 10)
  state = {'step': jnp.zeros((), jnp.int32), 'trainable': trainable,
           'opt_state': tx.init(trainable),
           'method_state': setup.method.recipe.init_state(setup.prepared, cfg),
           'rng': jax.random.PRNGKey(0)}
  s, b = cfg.data.image_size, cfg.train.batch_size
  cache = {'image': jax.ShapeDtypeStruct((1000, s, s, 3), jnp.uint8),
           'label': jax.ShapeDtypeStruct((1000,), jnp.int32)}
  idx = {'index': jax.ShapeDtypeStruct((b,), jnp.int32), 'mask': jax.ShapeDtypeStruct((b,), bool)}
  train_step = jax.jit(steps.make_cached_train_step(setup.model, setup.method.recipe, cfg, tx))
  exp = jax.export.export(train_step, platforms=PLATFORMS)(_shapes(state), _shapes(frozen), cache,
                                                           idx)
  _check(exp)
  assert 'xf32' in exp.mlir_module()  # the trainable state stays float32
  batch = {'image': jax.ShapeDtypeStruct((b, s, s, 3), jnp.uint8),
           'label': jax.ShapeDtypeStruct((b,), jnp.int32), 'mask': idx['mask']}
  eval_step = jax.jit(steps.make_eval_step(setup.model, cfg.data.normalization))
  exp = jax.export.export(eval_step, platforms=PLATFORMS)(_shapes(trainable), _shapes(frozen),
                                                          batch)
  _check(exp)


@pytest.mark.slow
def test_sap_train_and_eval_steps_lower_for_tpu_and_cuda_in_bf16(assets):  # noqa: F811
  # SAP reads the few-shot source through the host path: its step takes normalised images.
  from prompt_jax.methods import sap
  config = tiny_config(assets)
  config.unlock()
  config.model.compute_dtype = 'bfloat16'
  config.lock()
  model, params, _, _ = _prepared_model(config, CLASSES)
  trainable, frozen = tree.split(params, *sap.SAP.trainable_patterns(config))
  tx, _ = optim.make_optimizer(config.train, trainable, 10)
  state = {'step': jnp.zeros((), jnp.int32), 'trainable': trainable,
           'opt_state': tx.init(trainable), 'method_state': sap.SAP.recipe.init_state(None, config),
           'rng': jax.random.PRNGKey(0)}
  b = config.train.batch_size
  batch = {'image': jax.ShapeDtypeStruct((b, 32, 32, 3), jnp.float32),
           'label': jax.ShapeDtypeStruct((b,), jnp.int32),
           'mask': jax.ShapeDtypeStruct((b,), bool)}
  step = jax.jit(steps.make_train_step(model, sap.SAP.recipe, config, tx))
  _check(jax.export.export(step, platforms=PLATFORMS)(_shapes(state), _shapes(frozen), batch))
  _check(jax.export.export(jax.jit(steps.make_eval_step(model)), platforms=PLATFORMS)(
      _shapes(trainable), _shapes(frozen), batch))
