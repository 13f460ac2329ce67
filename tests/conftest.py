"""Pytest hooks and fixtures: the session's shared JAX compilation cache and a cached pretrained
.npz. Helpers that tests import by name live in tests/helpers.py."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from benchmarks import torch_side  # ROOT is on sys.path (above)

torch_side.load_triton_first()  # a CUDA torch's triton dies when loaded after TensorFlow

# One JAX persistent compilation cache per test session, shared by the xdist workers and the
# processes tests start (CLIs, benchmarks, notebooks): many tests compile the same micro programs
# afresh (`pytest -n 2` 22.0 -> 17.6 min on a 2-core Xeon with it). A hit is the same executable
# (keyed by the program, the flags and the devices), so no test changes what it checks.
# PROMPT_JAX_TEST_CACHE=0 turns it off.
_CACHE_ENV = ('JAX_COMPILATION_CACHE_DIR', 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS')
_MIN_COMPILE_S = 0.1  # programs that compile faster are not worth a file


def pytest_configure(config):
  if (hasattr(config, 'workerinput') or os.environ.get('PROMPT_JAX_TEST_CACHE') == '0'
      or os.environ.get(_CACHE_ENV[0])):
    return  # an xdist worker inherits the controller's; off; or the user's own cache
  import tempfile
  config._prompt_jax_cache = tempfile.mkdtemp(prefix='prompt_jax_test_jax_cache_')
  os.environ[_CACHE_ENV[0]] = config._prompt_jax_cache
  os.environ[_CACHE_ENV[1]] = str(_MIN_COMPILE_S)
  if 'jax' in sys.modules:  # imported before this hook: its flags have read the environment
    import jax
    jax.config.update('jax_compilation_cache_dir', config._prompt_jax_cache)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', _MIN_COMPILE_S)


def pytest_unconfigure(config):
  path = getattr(config, '_prompt_jax_cache', None)
  if path:
    import shutil
    shutil.rmtree(path, ignore_errors=True)
    for k in _CACHE_ENV:
      os.environ.pop(k, None)


@pytest.fixture(scope='session')
def pretrained_npz(tmp_path_factory):
  """A micro ViT pretrained on digits 0-4 in the original .npz format (runs once per session)."""
  from prompt_jax.configs import demo as demo_cfg
  from prompt_jax.protocol import demo
  c = demo_cfg.get_config()
  c.unlock()
  c.demo.pretrain_epochs = 10
  c.lock()
  return demo.pretrain(c, str(tmp_path_factory.mktemp('pretrain')))
