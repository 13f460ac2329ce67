"""A method defined outside prompt_jax/ (tests/outside/toy_method.py, with its config file
tests/outside/toy_config.py) registers itself and works through create_model, validation (its own
rule and message), the CLI (train + export), load_tuned, the sweep and the report; no file of the
package names it."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = 'tests/outside/toy_config.py'


@pytest.fixture(autouse=True)
def _forget_toy():
  """Each test registers 'toy' by importing it; none leaves it behind for later tests (whose
  messages list the known methods)."""
  yield
  from prompt_jax.methods import base
  base.METHODS.unregister('toy')
  package = sys.modules.get('tests.outside')
  for name in ('toy_method', 'toy_config'):
    sys.modules.pop(f'tests.outside.{name}', None)
    if package is not None and hasattr(package, name):
      delattr(package, name)  # else `from tests.outside import toy_method` skips the import


def test_api_and_validation_build_from_the_method():
  from tests.outside import toy_method  # registers 'toy'
  from prompt_jax import api
  from prompt_jax.train import validation
  model, params = api.create_model('Mu/8', 'toy', num_classes=5, checkpoint='random',
                                   image_size=32, scale=2.0)
  assert params['prompt']['prompts'].shape == (4, 2, 64)  # Mu/8: depth 4, width 64
  logits, _ = model.apply({'params': params}, np.zeros((2, 32, 32, 3), np.float32))
  assert logits.shape == (2, 5)
  with pytest.raises(TypeError, match=r"\(config.toy\) are \['num_tokens', 'scale'\]"):
    api.model_config('Mu/8', 'toy', scael=1.0)
  cfg = api.model_config('Mu/8', 'toy', checkpoint='random', image_size=32, scale=0.0)
  assert cfg.toy.num_tokens == toy_method.section().num_tokens
  with pytest.raises(validation.ConfigError, match='the toy method needs a positive scale'):
    validation.check(cfg)
  validation.check(api.model_config('Mu/8', 'toy', checkpoint='random', image_size=32))


@pytest.mark.slow
def test_cli_export_sweep_and_report(tmp_path):
  from prompt_jax.export import tuned as export
  from prompt_jax.protocol import report
  from prompt_jax.protocol import sweep
  wd = tmp_path / 'cli'
  out = subprocess.run([sys.executable, '-m', 'prompt_jax.main', f'--config={CONFIG}',
                        f'--workdir={wd}'], cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  res = json.loads((wd / 'results.json').read_text())
  assert res['method'] == 'toy' and res['config']['toy']['scale'] == 1.0

  from tests.outside import toy_method  # noqa: F401  (a process loading the export imports it)
  model, params, config = export.load_tuned('random', str(wd / 'tuned'))
  assert config.method == 'toy' and params['prompt']['prompts'].shape == (4, 2, 64)
  logits, _ = model.apply({'params': params}, np.zeros((1, 32, 32, 3), np.float32))
  assert logits.shape == (1, 5)

  assert report.main([f'--workdirs={wd}', f'--out={tmp_path / "t.md"}']) == 0
  assert '| toy ' in (tmp_path / 't.md').read_text()

  args = [f'--config={CONFIG}', '--tasks=dtd', '--seeds=0', f'--workdir={tmp_path / "sw"}',
          '--compilation_cache=']
  assert sweep.main(args) == 0
  assert '| toy ' in (tmp_path / 'sw' / 'report.md').read_text()
  assert sweep.main(args) == 0  # finished: skipped, the same run by the one rule


def test_no_file_of_the_package_names_the_outside_method():
  pkg = os.path.join(ROOT, 'prompt_jax')
  for folder, _, files in os.walk(pkg):
    for f in files:
      if f.endswith('.py'):
        with open(os.path.join(folder, f)) as fh:
          assert "'toy'" not in fh.read(), os.path.join(folder, f)
