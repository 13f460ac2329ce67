"""protocol.plan is pure: jobs, their configs, grids and finished-run checks without running
anything, importing TensorFlow or starting a JAX backend (config files import the methods'
sections, so flax and jax are imported, but no device is touched)."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_SCRIPT = """
import sys
from prompt_jax.protocol import searches as protocol
from prompt_jax.protocol import plan as sweep_plan
plan = sweep_plan.Plan(config='configs/vpt_vtab.py', tasks=('dtd',), seeds=(0, 1),
                       workdir=sys.argv[1], search=protocol.SEARCHES['vpt'], search_name='vpt',
                       overrides=(('train.epochs', '3'), ('train.warmup_epochs', '1')))
trials = plan.trials('dtd')
for job in trials + plan.finals('dtd', {'train.lr': 0.5, 'train.wd': 0.0}):
  cfg = sweep_plan.job_config(job)
  sweep_plan.check_job(job, cfg)
  assert sweep_plan.finished(job, cfg) is None and cfg.train.epochs == 3
assert len(trials) == len(protocol.SEARCHES['vpt'].trials())
heavy = sorted(m for m in ('tensorflow', 'tensorflow_datasets', 'torch') if m in sys.modules)
assert not heavy, heavy
if 'jax' in sys.modules:
  from jax._src import xla_bridge
  assert not xla_bridge._backends, 'a JAX backend was started'
print('ok')
"""


def test_planning_runs_nothing_and_imports_no_framework(tmp_path):
  out = subprocess.run([sys.executable, '-c', _SCRIPT, str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
  assert out.returncode == 0 and out.stdout.strip() == 'ok', out.stderr[-2000:]
