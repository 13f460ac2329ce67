"""What tests import by name: a micro config on the offline digits task, and whether torch is
there (tests that compare against PyTorch skip without it)."""

import importlib.util

import pytest

HAS_TORCH = importlib.util.find_spec('torch') is not None
# A test that compares against PyTorch (or runs a benchmark's PyTorch candidate) skips without it.
needs_torch = pytest.mark.skipif(
    not HAS_TORCH, reason='needs torch: pip install ".[test]" (the CI leg with torch)')



def micro_config(method: str = 'vpt', **train):
  """A locked config: Mu/8 ViT at 32px on digits 'downstream', a few quick epochs."""
  from prompt_jax.configs import demo
  c = demo.get_config()
  c.unlock()
  c.program = 'train'
  c.method = method
  c.init.checkpoint = 'random'  # tests train on a seeded random backbone unless they set one
  c.train.update(dict(dict(epochs=2, batch_size=32, eval_every_epochs=1, checkpoint_every_steps=5,
                           log_every_steps=5, export=False), **train))
  c.lock()
  return c
