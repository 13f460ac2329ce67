"""What tests import by name: a micro config on the offline digits task."""


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
