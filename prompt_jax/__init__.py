"""prompt_jax: visual prompt tuning of Vision Transformers in JAX/Flax."""

__version__ = '0.1.0'


def load_tuned(backbone_ckpt: str, tuned_ckpt: str, **kwargs):
  """See `prompt_jax.export.load_tuned`."""
  from prompt_jax import export
  return export.load_tuned(backbone_ckpt, tuned_ckpt, **kwargs)
