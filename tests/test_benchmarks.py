"""The benchmark suite runs, and its PyTorch counterparts compute what our methods compute.

Timings are printed by the suite, never asserted here. What is asserted: every method row builds,
the independent PyTorch model (references/torch_*.py) has the same trainable parameter
count, and
with our parameters copied in its logits and loss (CE + the method's auxiliary loss) match.
"""

import json
import os
import subprocess
import sys

import pytest

from helpers import needs_torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@needs_torch
def test_quick_suite_rows_and_pytorch_checks():
  # inline: the per-process harness is covered by the train-step test (it would add 16 worker
  # start-ups here)
  out = subprocess.run([sys.executable, '-m', 'benchmarks.run', '--quick', '--iters=1',
                        '--no_compile', '--harness=inline'], cwd=ROOT, capture_output=True,
                       text=True, timeout=1200)
  assert out.returncode == 0, out.stderr[-3000:]
  table = json.loads(out.stdout)
  rows = {r['method']: r for r in table['rows']}
  assert set(rows) == {'vpt_deep', 'ship', 'davpt', 'spt'}
  for name, r in rows.items():
    assert 'skipped' not in r, (name, r.get('skipped'))
    assert r['jax_images_per_s'] > 0 and r['jax_step_flops'] > 0
    assert r['jax_step_bytes_accessed'] > 0
    assert set(r['roofline']) == {'h100_sxm', 'tpu_v5e'}
    assert all(v['images_per_s'] > 0 for v in r['roofline'].values())
    assert r['trainable_params_match'], (name, r['trainable_params'], r['torch_trainable_params'])
    assert r['check']['ok'], (name, r['check'])


@needs_torch
def test_suite_process_harness_measures_pytorch_peak_memory():
  """With one process per candidate, the eager PyTorch worker also reports its step's peak RSS
  increase (the counterpart of the row's XLA memory analysis)."""
  out = subprocess.run([sys.executable, '-m', 'benchmarks.run', '--quick', '--iters=1',
                        '--no_compile', '--methods=davpt'], cwd=ROOT, capture_output=True,
                       text=True, timeout=1200)
  assert out.returncode == 0, out.stderr[-3000:]
  row = json.loads(out.stdout)['rows'][0]
  assert 'skipped' not in row and row['check']['ok'], row
  assert row['torch_step_peak_increase_bytes'] > 0
  assert row['jax_memory']['temp_bytes'] > 0


def test_page_faults_runs_each_malloc_mode_in_its_own_process():
  out = subprocess.run([sys.executable, '-m', 'benchmarks.page_faults', '--variant=Mu/8',
                        '--image=32', '--steps=1'], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  modes = json.loads(out.stdout)['modes']
  assert not modes['system']['malloc_reuse']
  assert modes['reuse']['malloc_reuse'] == sys.platform.startswith('linux')
  for mode in modes.values():
    assert set(mode['rows']) == {'live', 'live_remat'}
    assert all(r['wall_s_per_step'] > 0 and r['rss_bytes_after'] > 0
               for r in mode['rows'].values())


def test_input_loop_rows():
  out = subprocess.run([sys.executable, '-m', 'benchmarks.input_loop', '--image_size=32',
                        '--n_train=64', '--n_test=48', '--batch_size=16', '--eval_batch_size=32',
                        '--epochs=1'], cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  rows = json.loads(out.stdout)['rows']
  assert len(rows) == 7 and all(v > 0 for v in rows.values()), rows


@needs_torch
def test_train_step_times_torch_compile_apart():
  """The torch.compile anchor: compiled PyTorch is a candidate, its compile time is reported apart
  and the ratio is against the faster of eager and compiled, at both the best and median round;
  each candidate timed in its own process (the default harness)."""
  out = subprocess.run([sys.executable, '-m', 'benchmarks.train_step', '--variant=Mu/8',
                        '--image=32', '--prompts=4', '--iters=2', '--paths=live'], cwd=ROOT,
                       capture_output=True, text=True, timeout=1200)
  assert out.returncode == 0, out.stderr[-3000:]
  table = json.loads(out.stdout)
  assert table['machine']['cpu_model'] and len(table['load_average_before']) == 3
  assert table['harness'] == 'process'
  row = table['rows'][0]
  assert row['torch_compile_s'] > 0 and row['torch_compiled_images_per_s'] > 0
  best = {k: row[f'{k}_timing']['images_per_s_best'] for k in ('torch', 'torch_compiled')}
  fastest = max(best.values())
  assert abs(row['live_over_best_torch']['best'] * fastest
             - row['jax_live_timing']['images_per_s_best']) < 1e-6 * fastest
  for k in ('jax_live', 'torch', 'torch_compiled'):
    t = row[f'{k}_timing']
    assert t['rounds'] == 2 and t['images_per_s_best'] >= t['images_per_s_median'] > 0


def test_pytorch_beside_tensorflow_that_crashes_is_one_line():
  """A candidate stack whose torch dies beside TensorFlow (a CUDA torch's triton: exit 139 or an
  LLVM abort) is found in a child process and named in one line, with what to do."""
  from benchmarks import torch_side
  crash = 'import os, signal; os.kill(os.getpid(), signal.SIGSEGV)'
  line = torch_side.probe_problem(crash)
  assert line and 'SIGSEGV' in line and '--no_torch' in line and '\n' not in line, line
  line = torch_side.probe_problem('raise SystemExit("no torch here")')
  assert line and 'no torch here' in line and '\n' not in line, line
  assert torch_side.probe_problem('pass') is None


def _sleep_step(seconds: float):
  import time
  return lambda: time.sleep(seconds), {'pid': os.getpid(),
                                       'probe': os.environ.get('BENCH_PROBE')}


def _broken_step():
  raise ValueError('no such model')


def test_time_candidates_one_process_each_and_build_errors_named():
  """The process harness: every candidate is built and timed in its own process, rounds are
  interleaved, and a candidate that fails to build is named in the error."""
  sys.path.insert(0, ROOT)
  from benchmarks import common
  spec = lambda s: ('tests.test_benchmarks', '_sleep_step', {'seconds': s})
  assert 'BENCH_PROBE' not in os.environ
  times, infos = common.time_candidates({'a': spec(0.01), 'b': spec(0.03)}, iters=3,
                                        env={'BENCH_PROBE': 'x=1'})
  assert 'BENCH_PROBE' not in os.environ  # set for the workers only
  assert infos['a']['probe'] == infos['b']['probe'] == 'x=1'
  assert not infos['a']['malloc_reuse']  # malloc set up as the trainer's: system by default
  assert common.parse_env('A=1,B=x=y') == {'A': '1', 'B': 'x=y'}
  assert {len(v) for v in times.values()} == {3}
  assert min(times['b']) > max(times['a'])
  assert len({infos['a']['pid'], infos['b']['pid'], os.getpid()}) == 3
  _, infos = common.time_candidates({'a': spec(0.0)}, iters=1, env={'PROMPT_JAX_MALLOC': 'reuse'})
  assert infos['a']['malloc_reuse'] == sys.platform.startswith('linux')
  with pytest.raises(RuntimeError, match="'bad' failed to build: ValueError: no such model"):
    common.time_candidates({'a': spec(0.0), 'bad': ('tests.test_benchmarks', '_broken_step', {})})


@needs_torch
@pytest.mark.slow
def test_gpu_check_cpu_dry_mode():
  """benchmarks/gpu_check.sh --cpu: every stage of the GPU check runs (micro model on CPU)."""
  env = dict(os.environ, GPU_CHECK_TIMEOUT='1100')  # the 8-minute cap is the GPU run's
  out = subprocess.run(['bash', 'benchmarks/gpu_check.sh', '--cpu', '--methods=vpt_deep'],
                       cwd=ROOT, capture_output=True, text=True, timeout=1200, env=env)
  assert out.returncode == 0, out.stderr[-3000:]
  table = json.loads(out.stdout)
  assert table['mode'] == 'cpu' and table['accelerator_tests']['returncode'] == 0
  assert 'error' not in table['rows'][0] and table['rows'][0]['jax_images_per_s'] > 0
  vs = table['vpt_deep_vs_torch']
  assert 'error' not in vs, vs
  assert vs['torch_compile_s'] > 0 and vs['jax_over_best_torch'] > 0


@needs_torch
def test_torch_memory_rows():
  out = subprocess.run([sys.executable, '-m', 'benchmarks.torch_memory', '--variant=Mu/8',
                        '--batch=2', '--prompts=4,16', '--threads=1'], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  rows = json.loads(out.stdout)['rows']
  assert [r['prompts'] for r in rows] == [4, 16]
  assert all(r['peak_rss_bytes'] >= r['baseline_rss_bytes'] > 0 for r in rows), rows
