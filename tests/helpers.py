"""What tests import by name: a micro config on the offline digits task, a copy of a config with
some fields changed, and whether torch is there (tests that compare against PyTorch skip without
it)."""

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


def changed(config, **fields):
  """A locked copy of `config` with `fields` set as given (`train__lr=0.1`: config.train.lr),
  without any conversion or check, so tests can hand the validation bad values."""
  c = config.copy_and_resolve_references()
  c.unlock()
  for key, value in fields.items():
    node = c
    *parents, leaf = key.split('__')
    for p in parents:
      node = node[p]
    node[leaf] = value
  c.lock()
  return c
