"""prompt_jax: visual prompt tuning of Vision Transformers in JAX/Flax.

  model, params = prompt_jax.create_model('B/16', 'vpt', checkpoint='ViT-B_16.npz', num_classes=10)
  trainable, frozen = prompt_jax.split_params(params, 'vpt')
  images = prompt_jax.preprocess(uint8_images, 'configs/vpt_vtab.py')
  model, params, config = prompt_jax.load_tuned('ViT-B_16.npz', 'workdir/tuned')
  model = prompt_jax.load_tasks({'dtd': 'runs/dtd/tuned', 'pets': 'runs/pets/tuned'},
                                'ViT-B_16.npz')
  logits, mask = model(images, ['dtd', 'pets'])   # one batch, each image with its own task

(see prompt_jax.api, prompt_jax.export.tuned and prompt_jax.export.serving; the names import
their modules on first use.)

Layers, low to high; a module imports only from its own layer and those below
(tests/test_structure.py checks it, docs/architecture.md explains it):
  util/ < models/, text/ < checkpoints/, data/, evaluators/ < methods/ < train/ < export/
  < protocol/ < main.py, api.py
"""

__version__ = '0.1.0'

_API = {'create_model': 'api', 'split_params': 'api', 'model_config': 'api', 'preprocess': 'api',
        'load_tuned': 'export.tuned', 'load_tasks': 'export.serving'}
__all__ = sorted(_API)


def __getattr__(name: str):
  if name in _API:
    import importlib
    return getattr(importlib.import_module(f'prompt_jax.{_API[name]}'), name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def _source_checkout_configs() -> None:
  """Imported from a source checkout (not installed), the repository's top-level configs/ folder
  is the package prompt_jax.configs, as setup.py installs it (an installed copy has its own)."""
  import os
  here = os.path.dirname(os.path.abspath(__file__))
  src = os.path.join(os.path.dirname(here), 'configs')
  init = os.path.join(src, '__init__.py')
  if os.path.isdir(os.path.join(here, 'configs')) or not os.path.isfile(init):
    return
  import importlib.util
  import sys
  name = f'{__name__}.configs'
  if name in sys.modules:
    return
  spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[src])
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  spec.loader.exec_module(module)


_source_checkout_configs()
