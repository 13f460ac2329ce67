"""The test session's shared JAX compilation cache (tests/conftest.py)."""

import os

import pytest


@pytest.mark.skipif(os.environ.get('PROMPT_JAX_TEST_CACHE') == '0', reason='cache turned off')
def test_the_session_shares_one_compilation_cache():
  import jax
  path = jax.config.jax_compilation_cache_dir
  assert path and os.path.isdir(path)
  assert os.environ['JAX_COMPILATION_CACHE_DIR'] == path  # what processes tests start inherit
