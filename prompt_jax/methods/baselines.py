"""Baselines on the same trainer: linear probe (head only) and full fine-tuning (everything)."""

from prompt_jax.methods import base

LINEAR = base.register(base.Method(name='linear', trainable=(r'^head/',)))
FULL = base.register(base.Method(name='full', trainable=(r'.*',)))
