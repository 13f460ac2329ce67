"""Offline demo on scikit-learn's digits (no downloads): a few minutes on 2 CPU cores.

  python -m prompt_jax.main --config=configs/demo.py --workdir=/tmp/demo

Pretrains a micro ViT (Mu/8 at 32px: width 64, depth 4) on digits 0-4, saves it as an
original-format .npz, then tunes on digits 5-9 (train on 'train800' = 300 images, select on
'val200' = 100, report 'test' ≈ 500) with a linear probe, VPT-shallow and VPT-deep.
"""


from prompt_jax.configs import common

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
  c.demo = common.demo(pretrain_epochs=40, pretrain_lr=2e-3)
  return common.finalize(c)
