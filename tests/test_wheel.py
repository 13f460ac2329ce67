"""The wheel, as a new user meets it: built from the repository, installed (not editable) into a
fresh virtual environment, run by its console script from an empty directory.

No network: the fresh environment sees the running interpreter's dependencies through a .pth file
listing its site-packages folders (folders added by a .pth are not scanned for further .pth files,
so the development environment's editable install of prompt_jax stays out); the wheel itself is
installed with `pip install --no-deps --no-index`.
"""

import glob
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(cmd, **kw):
  out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
  assert out.returncode == 0, f'{cmd}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}'
  return out


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
  """The wheel built from a copy of the repository (the build writes build/ and *.egg-info)."""
  tmp = tmp_path_factory.mktemp('wheel')
  src = tmp / 'src'
  shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
      '.git', 'build', 'dist', '*.egg-info', '__pycache__', '*.pyc', '.venv'))
  _run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '--no-index',
        '-q', '-w', str(tmp / 'dist'), str(src)])
  (path,) = glob.glob(str(tmp / 'dist' / 'prompt_jax-*.whl'))
  return path


@pytest.fixture(scope='module')
def fresh_env(wheel, tmp_path_factory):
  """A new venv holding only the wheel; returns its bin/ folder."""
  env = tmp_path_factory.mktemp('venv')
  venv.create(env, with_pip=False)
  python = str(env / 'bin' / 'python')
  purelib = _run([python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'])
  deps = [p for p in sys.path if os.path.basename(p) in ('site-packages', 'dist-packages')
          and os.path.isdir(p)]
  deps = deps or [sysconfig.get_paths()['purelib']]
  with open(os.path.join(purelib.stdout.strip(), '_test_deps.pth'), 'w') as f:
    f.write('\n'.join(deps) + '\n')
  # --ignore-installed: a prompt_jax installed in the running environment (seen through the .pth)
  # must not stand in for the wheel
  _run([sys.executable, '-m', 'pip', '--python', python, 'install', '--no-deps', '--no-index',
        '--ignore-installed', '-q', wheel])
  return env / 'bin'


def test_wheel_holds_only_the_prompt_jax_package(wheel):
  names = zipfile.ZipFile(wheel).namelist()
  assert {n.split('/')[0] for n in names} == {'prompt_jax', 'prompt_jax-0.1.0.dist-info'}
  assert 'prompt_jax/configs/demo.py' in names and 'prompt_jax/configs/common.py' in names
  entry_points = zipfile.ZipFile(wheel).read('prompt_jax-0.1.0.dist-info/entry_points.txt')
  assert b'prompt-jax = prompt_jax.main:run' in entry_points


def test_installed_package_is_the_wheel_and_installs_no_top_level_configs(fresh_env, tmp_path):
  code = ('import importlib.util, prompt_jax; print(prompt_jax.__file__); '
          'print(importlib.util.find_spec("configs"), importlib.util.find_spec("benchmarks"))')
  out = _run([str(fresh_env / 'python'), '-c', code], cwd=tmp_path)
  where, specs = out.stdout.splitlines()
  assert where.startswith(str(fresh_env.parent)), where
  assert specs == 'None None'


@pytest.mark.slow
def test_console_script_runs_the_demo_from_an_empty_directory(fresh_env, tmp_path):
  cwd, workdir = tmp_path / 'empty', tmp_path / 'run'
  cwd.mkdir()
  help_out = _run([str(fresh_env / 'prompt-jax'), '--help'], cwd=cwd)
  assert '--show_config' in help_out.stdout
  out = _run([str(fresh_env / 'prompt-jax'), '--config=configs/demo.py', f'--workdir={workdir}',
              '--config.demo.pretrain_epochs=1', '--config.train.epochs=1',
              "--config.demo.runs=('vpt_deep',)"], cwd=cwd)
  assert (workdir / 'demo_results.json').exists()
  assert (workdir / 'vpt_deep' / 'results.json').exists()
  assert '| vpt_deep |' in out.stdout and f'Outputs in {workdir}' in out.stdout
  assert os.listdir(cwd) == []  # nothing written where it was started
