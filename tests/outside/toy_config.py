"""Config of the outside-the-package method 'toy' (tests/outside/toy_method.py) on offline digits.

  python -m prompt_jax.main --config=tests/outside/toy_config.py --workdir=/tmp/toy

`task=` is accepted (the sweep sets it) and recorded as the run's label only: every task trains the
digits 'downstream' split, since this is a test fixture, not a benchmark.
"""

from prompt_jax.configs import common
from tests.outside import toy_method


def get_config(arg: str | None = None):
  a = common.parse_arg(arg, task='downstream')
  del a
  c = common.base()
  c.method = 'toy'
  c.toy = toy_method.section(num_tokens=2)
  c.init.checkpoint = 'random'
  c.model.variant = 'Mu/8'
  c.data.update(source='digits', task='downstream', image_size=32, train_split='train800',
                eval_splits=('val200', 'test'), val_split='val200')
  c.train.update(epochs=1, batch_size=32, lr=0.5, warmup_epochs=0, eval_every_epochs=1,
                 checkpoint_every_steps=100, log_every_steps=5)
  return common.finalize(c)
