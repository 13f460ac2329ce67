"""Offline demo on scikit-learn's digits (no downloads): a few minutes on 2 CPU cores.

  python -m prompt_jax.main --config=configs/demo.py --workdir=/tmp/demo

Pretrains a micro ViT (Mu/8 at 32px: width 64, depth 4) on digits 0-4, saves it as an
original-format .npz, then tunes on digits 5-9 (train on 'train800' = 300 images, select on
'val200' = 100, report 'test' ≈ 500) with a linear probe, VPT-shallow and VPT-deep.
"""

from typing import Any

from prompt_jax.configs import common

# config.demo.run_table: name -> the overrides of that run (a method and its options);
# config.demo.runs: which of them run, in order (prompt_jax/protocol/demo.py).
RUN_TABLE = {
    'linear': {'method': 'linear'},
    'vpt_shallow': {'method': 'vpt', 'vpt': {'deep': False, 'dropout': 0.0}},
    'vpt_deep': {'method': 'vpt', 'vpt': {'deep': True}},
}


def section(**over: Any) -> common.ConfigDict:
  """`config.demo`: pretraining (full fine-tuning of a random micro ViT on digits 0-4) and runs."""
  c = common.ConfigDict(dict(pretrain_epochs=40, pretrain_lr=2e-3, pretrain_method='full',
                             runs=tuple(RUN_TABLE), run_table=RUN_TABLE))
  c.update(over)
  return c


def get_config(arg: str | None = None):
  common.parse_arg(arg)  # takes no arguments
  c = common.base()
  c.program = 'demo'
  c.method = 'vpt'
  c.model.variant = 'Mu/8'
  c.data.update(source='digits', task='downstream', image_size=32,
                normalization='minus_one_to_one', train_split='train800',
                eval_splits=('val200', 'test'), val_split='val200')
  c.vpt = common.vpt(num_prompts=8, deep=True, dropout=0.0)
  c.train.update(epochs=30, batch_size=32, eval_batch_size=256, optimizer='sgd', lr=2.0,
                 lr_scale_by_batch=True, wd=1e-4, warmup_epochs=3, eval_every_epochs=5,
                 checkpoint_every_steps=100, log_every_steps=50)
  c.demo = section(pretrain_epochs=40, pretrain_lr=2e-3)
  return common.finalize(c)
