"""Every recipe on every task, in CI: each method config (VPT-deep, linear, full, SHIP, DA-VPT with
its class-balanced sampler, SPT with its default k-means initialiser) x the 19 VTAB tasks on TFDS
mock data with each task's real class count and image shape; the recipes' options (VPT-shallow,
SPT's random / mean / max pooling initialisers) on one task per group (`PROMPT_JAX_MATRIX=full`:
on every task); LoRA, Adapter, Prefix and BitFit on one task each; DA-VPT's FGVC config and VPT
on the 5 FGVC sets through the folder/json layout; SAP base-to-novel on a mocked few-shot set.
`PROMPT_JAX_MATRIX=cover` (CI's second stack) runs every config and every task, not every pair.
Each case: prepare + 2 train steps + eval + export on Mu/8 at 32px, with no error.

The cases run in worker processes (tests/matrix_cases.py; one per core, up to 2), each case
in-process there, sharing data sources and compiled programs; the workers compile with XLA's
backend optimisation off (`--xla_backend_optimization_level=0`), which halves compile time, the
bulk of a micro case. Each test below reports its own case (and re-raises its error).
Select cases as usual, e.g. `pytest tests/test_matrix.py -k "ship and dtd"`."""

import builtins
import json
import os
import subprocess
import sys

import pytest

from helpers import HAS_TORCH
from helpers import needs_torch
from prompt_jax.data import tasks
from tests import matrix_cases
from tests import mocked

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKERS = int(os.environ.get('PROMPT_JAX_MATRIX_WORKERS', min(2, os.cpu_count() or 1)))


def _needs_torch(case: dict[str, str]) -> bool:
  """SAP's mocked few-shot assets are a tiny transformers CLIP (torch)."""
  return case['kind'] == 'sap'


def _params():
  out = []
  for c in matrix_cases.all_cases():
    marks = [pytest.mark.slow] + ([needs_torch] if _needs_torch(c) else [])
    out.append(pytest.param(c, marks=marks, id=f"{c['kind']}-{c['name']}-{c['task']}"))
  return out


def _selected_cases(session) -> list[dict[str, str]]:
  cases = []
  for item in session.items:
    if item.module.__name__ == __name__ and hasattr(item, 'callspec'):
      case = item.callspec.params['case']
      if HAS_TORCH or not _needs_torch(case):  # a skipped case is not run by the workers
        cases.append(case)
  return cases


@pytest.fixture(scope='module')
def matrix(request, tmp_path_factory):
  """Runs the selected cases in WORKERS processes (split by task); {case id: record}."""
  cases = _selected_cases(request.session)
  d = tmp_path_factory.mktemp('matrix')
  assets = {'checkpoints': mocked.micro_checkpoints(str(d)),
            'fgvc': mocked.fgvc_folders(str(d / 'fgvc')), 'workdir': str(d / 'runs')}
  os.makedirs(assets['workdir'])
  with open(d / 'assets.json', 'w') as f:
    json.dump(assets, f)
  tasks_in_order = list(dict.fromkeys(c['task'] for c in cases))
  shards = [[c for c in cases if tasks_in_order.index(c['task']) % WORKERS == w]
            for w in range(WORKERS)]
  env = dict(os.environ, XLA_FLAGS=(os.environ.get('XLA_FLAGS', '') +
                                    ' --xla_backend_optimization_level=0').strip())
  procs = []
  for w, shard in enumerate(s for s in shards if s):
    with open(d / f'cases{w}.json', 'w') as f:
      json.dump(shard, f)
    log = open(d / f'worker{w}.log', 'w')
    procs.append((subprocess.Popen(
        [sys.executable, '-m', 'tests.matrix_cases', f'--cases={d}/cases{w}.json',
         f'--assets={d}/assets.json', f'--out={d}/results{w}.jsonl',
         f'--compilation_cache={d}/jax_cache'],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT), log, w))
  records, logs = {}, {}
  for proc, log, w in procs:
    proc.wait(timeout=3600)
    log.close()
    logs[w] = (d / f'worker{w}.log').read_text()[-3000:]
    path = d / f'results{w}.jsonl'
    if path.exists():
      for line in path.read_text().splitlines():
        r = json.loads(line)
        records[r['id']] = dict(r, worker=w)
  return records, logs


def test_matrix_case_ids_are_unique(monkeypatch):
  # 4 recipes x 19 tasks + (4 options, linear, full) x 3 tasks (x 19 with
  # PROMPT_JAX_MATRIX=full) + 4 PETL + 2 FGVC configs x 5 sets + SAP; cover: 19 + 6 + 4 + 5 + 1
  for mode, n in (('', 4 * 19 + 6 * 3 + 4 + 2 * 5 + 1), ('full', 10 * 19 + 4 + 2 * 5 + 1),
                  ('cover', 19 + 6 + 4 + 5 + 1)):
    monkeypatch.setenv('PROMPT_JAX_MATRIX', mode)
    ids = [matrix_cases.case_id(c['kind'], c['name'], c['task'])
           for c in matrix_cases.all_cases()]
    assert len(ids) == len(set(ids)) == n, mode


def test_the_cover_matrix_runs_every_config_and_every_task(monkeypatch):
  monkeypatch.setenv('PROMPT_JAX_MATRIX', 'cover')
  cases = matrix_cases.all_cases()
  names = {**matrix_cases.VTAB_CONFIGS, **matrix_cases.PETL_CONFIGS, **matrix_cases.FGVC_CONFIGS}
  assert {c['name'] for c in cases} == set(names) | {'sap_b2n'}
  for kind, want in (('vtab', tasks.VTAB_TASKS), ('fgvc', tasks.FGVC_TASKS)):
    assert {c['task'] for c in cases if c['kind'] == kind} == set(want), kind
  monkeypatch.setenv('PROMPT_JAX_MATRIX', 'al')
  with pytest.raises(ValueError, match="PROMPT_JAX_MATRIX='al'"):
    matrix_cases.all_cases()


@pytest.mark.parametrize('case', _params())
def test_case(case, matrix):
  records, logs = matrix
  cid = matrix_cases.case_id(case['kind'], case['name'], case['task'])
  if cid not in records:
    pytest.fail(f'{cid}: no result from its worker; worker logs:\n' + '\n'.join(logs.values()))
  r = records[cid]
  if not r['ok']:
    kind = getattr(builtins, r['error_type'], None)
    err = kind if isinstance(kind, type) and issubclass(kind, Exception) else AssertionError
    raise err(f"{r['error_type']}: {r['error']}\n--- traceback in the worker ---\n"
              f"{r['traceback']}")
  res = r['result']
  assert res['steps'] == 2
  assert res['accuracies'] and all(0.0 <= a <= 1.0 for a in res['accuracies'])
  if 'num_classes' in res:
    assert res['num_classes'] == res['want_classes']
  for path in res['files']:
    assert os.path.exists(path), path
