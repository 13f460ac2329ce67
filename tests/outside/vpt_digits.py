"""configs/vpt_vtab.py on offline digits for sweep tests: `task=` is accepted (the sweep sets it)
and ignored, every task trains the digits 'downstream' split (a test fixture, not a benchmark)."""

from prompt_jax.configs import common


def get_config(arg: str | None = None):
  common.parse_arg(arg, task='downstream')
  c = common.base()
  c.method = 'vpt'
  c.vpt = common.vpt(num_prompts=50, deep=True, dropout=0.1)
  c.model.variant = 'Mu/8'
  c.data.update(source='digits', task='downstream', image_size=32, normalization='imagenet')
  c.train.update(optimizer='sgd', epochs=2, batch_size=32, lr=0.25, wd=1e-3, warmup_epochs=0)
  return common.finalize(c)
