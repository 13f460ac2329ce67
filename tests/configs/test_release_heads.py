"""The new head of DA-VPT's and SPT's configs is the releases' timm `trunc_normal_(std)`: cut-offs
±2 absolute, so the sampled std is `std` (flax's `trunc_normal` cuts at ±2σ: 0.88·std).
Noahsark/DA-VPT model_creator.py:175; WangYZ1608/Self-Prompt-Tuning train_MAE.py:273 (.02),
train_MoCo.py:260 (.01)."""

import importlib

import jax
import numpy as np
import pytest

from prompt_jax.models import vit


@pytest.mark.parametrize('module,arg,std', [
    ('davpt_vtab', 'backbone=mae', 0.02), ('davpt_fgvc', 'backbone=mocov3', 0.02),
    ('spt_vtab', 'backbone=mae', 0.02), ('spt_vtab', 'backbone=mocov3', 0.01)])
def test_head_is_timm_trunc_normal(module, arg, std):
  c = importlib.import_module(f'prompt_jax.configs.{module}').get_config(arg)
  init = vit._head_init(c.model.head_init, c.model.head_init_std)
  w = np.asarray(init(jax.random.PRNGKey(0), (768, 1000)))
  assert abs(w.std() - std) < 0.005 * std
  assert c.model.head_bias_init == 0.0
