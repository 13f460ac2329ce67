"""model.remat: the same train step (loss, updated trainable params) with less temp memory."""

import jax
import numpy as np
import pytest

from helpers import micro_config


@pytest.mark.parametrize('method', ['vpt'])
def test_remat_same_step_less_memory(method):
  outs, temps = {}, {}
  for remat in (False, True):
    from benchmarks import common as bench
    from prompt_jax.train import trainer as train
    from prompt_jax.util import tree
    cfg = micro_config(method)
    cfg.unlock()
    cfg.model.remat = remat
    cfg.data.image_size = 32
    cfg.lock()
    setup = train.build(cfg, '/tmp/unused_remat_test')
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 5, 8).astype(np.int32)
    _, compiled, _, _, state = bench.compile_trainer_step(setup, x, y)
    trainable, frozen = tree.split(setup.params, *setup.method.trainable_patterns(cfg))
    b = {'image': x, 'label': y, 'mask': np.ones(8, bool)}
    new_state, metrics = compiled(state, frozen, b)
    outs[remat] = (float(metrics['loss']), new_state['trainable'])
    temps[remat] = compiled.memory_analysis().temp_size_in_bytes
  assert abs(outs[True][0] - outs[False][0]) < 1e-5
  for a, b in zip(jax.tree.leaves(outs[True][1]), jax.tree.leaves(outs[False][1])):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
  assert temps[True] < temps[False], temps
