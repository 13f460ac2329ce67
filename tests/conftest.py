"""Shared test fixtures: a micro config on the offline digits task and a cached pretrained .npz."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


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


@pytest.fixture(scope='session')
def pretrained_npz(tmp_path_factory):
  """A micro ViT pretrained on digits 0-4 in the original .npz format (runs once per session)."""
  from prompt_jax.configs import demo as demo_cfg
  from prompt_jax import demo
  c = demo_cfg.get_config()
  c.unlock()
  c.demo.pretrain_epochs = 10
  c.lock()
  return demo.pretrain(c, str(tmp_path_factory.mktemp('pretrain')))
