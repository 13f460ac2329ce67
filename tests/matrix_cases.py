"""The recipe x task matrix (run by tests/test_matrix.py): every method config on every VTAB task
(TFDS mock data), the FGVC folder/json layout and SAP on a few-shot set, each case = prepare +
2 train steps + eval + export on a micro backbone (Mu/8 at 32px).

A worker runs a list of cases in one process, loading each config exactly as the sweep and main do
(`sweep.parse_config`: the config file with `task=`, then `--config.x=y` overrides) and running the
config's program. Shared between cases: each (task, data config)'s data source, and compiled
programs through JAX's persistent compilation cache.

  python -m tests.matrix_cases --cases=cases.json --assets=assets.json --out=results.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from prompt_jax.data import tasks

NUM_EXAMPLES = 96  # mock examples per split: every task with >= 16 classes shows >= 16 of them
MICRO = (('model.variant', 'Mu/8'), ('data.image_size', '32'), ('train.batch_size', '32'),
         ('train.eval_batch_size', '64'), ('train.max_steps', '2'),
         ('train.eval_every_epochs', '1000'), ('train.checkpoint_every_steps', '1000'),
         ('train.export', 'True'))
SHIP = (('ship.num_prototypes', '8'), ('ship.kmeans_n_init', '1'),
        ('ship.max_images', str(NUM_EXAMPLES)))
DAVPT = (('davpt.proxy_start', '3'), ('davpt.proxy_end', '3'))  # the last block of Mu/8


def _spt(strategy: str) -> tuple[tuple[str, str], ...]:
  return (('vpt.num_prompts', '4'), ('prompt_init.strategy', strategy))


# name -> (config file[:args], overrides beyond MICRO)
VTAB_CONFIGS = {
    'vpt_deep': ('configs/vpt_vtab.py', ()),
    'vpt_shallow': ('configs/vpt_vtab.py:deep=False', ()),
    'linear': ('configs/linear_vtab.py', ()),
    'full': ('configs/full_vtab.py', ()),
    'ship': ('configs/ship_vtab.py', SHIP),
    'davpt': ('configs/davpt_vtab.py', DAVPT),
    **{f'spt_{s}': ('configs/spt_vtab.py', _spt(s))
       for s in ('random', 'mean_pooling', 'max_pooling', 'kmeans')},
}
# The parameter-efficient baselines, each on one task (the groups and label transforms
# spread over them): their data path is the prompt methods' (every task above); what differs is
# the model, the same on every task. ~15 CPU-s a case.
PETL_CONFIGS = {m: (f'configs/{m}_vtab.py', ()) for m in ('lora', 'adapter', 'prefix', 'bitfit')}
PETL_TASKS = {'lora': 'cifar100', 'adapter': 'eurosat', 'prefix': 'dsprites_loc',
              'bitfit': 'smallnorb_ele'}
FGVC_CONFIGS = {
    'davpt_fgvc': ('configs/davpt_fgvc.py', DAVPT),
    'vpt_deep_fgvc': ('configs/vpt_vtab.py', (
        ('data.source', 'folder'), ('data.layout', 'fgvc'), ('data.train_split', 'train'),
        ('data.eval_splits', "('val', 'test')"), ('data.val_split', 'val'))),
}
SAP_OVERRIDES = (('model.variant', 'test_tiny/8'), ('sap.depth', '2'), ('sap.encode_batch', '8'),
                 ('init.format', 'clip_hf'), ('data.image_size', '32'), ('data.shots', '4'),
                 ('train.epochs', '1'), ('train.eval_batch_size', '8'))


def case_id(kind: str, name: str, task: str) -> str:
  return f'{kind}:{name}-{task}'


# Run on one task per VTAB group (different label transforms and image shapes), not on all 19:
# - options of a recipe (same config file and per-task values; another prompt depth or SPT
#   initialiser): their recipe (vpt_deep, spt_kmeans: the configs' defaults) runs on every task;
# - linear and full: no per-task settings; the data path of every task is the one vpt_deep,
#   SHIP, DA-VPT and SPT run on all 19, and their model is the same on every task.
# PROMPT_JAX_MATRIX=full runs them on every task too (205 cases instead of 109).
OPTION_VARIANTS = ('vpt_shallow', 'linear', 'full', 'spt_random', 'spt_mean_pooling',
                   'spt_max_pooling')
OPTION_TASKS = ('cifar100', 'patch_camelyon', 'smallnorb_ele')
# PROMPT_JAX_MATRIX=cover (CI's second stack, where the first runs the default matrix): every
# config and every task at least once, not every pair: the recipes (vpt_deep, ship, davpt,
# spt_kmeans) take the 19 tasks in turn, each option one task of OPTION_TASKS, the FGVC configs
# the 5 sets in turn; PETL and SAP as by default (35 cases).
RECIPES = ('vpt_deep', 'ship', 'davpt', 'spt_kmeans')


def _cover_cases() -> list[dict[str, str]]:
  out = [{'kind': 'vtab', 'name': RECIPES[i % len(RECIPES)], 'task': t}
         for i, t in enumerate(tasks.VTAB_TASKS)]
  out += [{'kind': 'vtab', 'name': n, 'task': OPTION_TASKS[i % len(OPTION_TASKS)]}
          for i, n in enumerate(OPTION_VARIANTS)]
  out += [{'kind': 'vtab', 'name': n, 'task': PETL_TASKS[n]} for n in PETL_CONFIGS]
  names = list(FGVC_CONFIGS)
  out += [{'kind': 'fgvc', 'name': names[i % len(names)], 'task': t}
          for i, t in enumerate(tasks.FGVC_TASKS)]
  out.append({'kind': 'sap', 'name': 'sap_b2n', 'task': 'dtd'})
  return out


def all_cases() -> list[dict[str, str]]:
  mode = os.environ.get('PROMPT_JAX_MATRIX', '')
  if mode not in ('', 'full', 'cover'):
    raise ValueError(f"PROMPT_JAX_MATRIX={mode!r}: use 'full', 'cover' or leave it unset")
  if mode == 'cover':
    return _cover_cases()
  full = mode == 'full'
  out = [{'kind': 'vtab', 'name': n, 'task': t} for n in VTAB_CONFIGS for t in tasks.VTAB_TASKS
         if full or n not in OPTION_VARIANTS or t in OPTION_TASKS]
  out += [{'kind': 'vtab', 'name': n, 'task': PETL_TASKS[n]} for n in PETL_CONFIGS]
  out += [{'kind': 'fgvc', 'name': n, 'task': t} for n in FGVC_CONFIGS for t in tasks.FGVC_TASKS]
  out.append({'kind': 'sap', 'name': 'sap_b2n', 'task': 'dtd'})
  return out


# ----------------------------------------------------------------------------- one case


def _run(spec: str, overrides, workdir: str, checkpoints: dict[str, str] | None):
  from prompt_jax.protocol import programs
  from prompt_jax.protocol import sweep
  argv = [f'--config={spec}'] + [f'--config.{k}={v}' for k, v in overrides]
  if checkpoints is not None:
    fmt = sweep.parse_config(argv).init.format
    argv.append(f'--config.init.checkpoint={checkpoints[fmt]}')
  cfg = sweep.parse_config(argv)
  return programs.get(cfg)(cfg, workdir), cfg


def run_case(case: dict[str, str], assets: dict[str, object], workdir: str) -> dict[str, object]:
  """Runs one case; returns what the test checks. Raises what the run raises."""
  from prompt_jax.protocol import sweep
  from tests import mocked
  kind, name, task = case['kind'], case['name'], case['task']
  if kind == 'vtab':
    path, extra = {**VTAB_CONFIGS, **PETL_CONFIGS}[name]
    with mocked.mocked_vtab(NUM_EXAMPLES):
      res, cfg = _run(sweep.task_spec(path, task), MICRO + extra, workdir, assets['checkpoints'])
    want_classes = tasks.NUM_CLASSES[task]
  elif kind == 'fgvc':
    path, extra = FGVC_CONFIGS[name]
    data = (('data.data_dir', os.path.join(assets['fgvc'], task)),)
    res, cfg = _run(sweep.task_spec(path, task), MICRO + extra + data, workdir,
                    assets['checkpoints'])
    want_classes = mocked.FGVC_CLASSES[task]
  else:
    sap = mocked.fewshot_assets(tempfile.mkdtemp(dir=workdir))
    data = (('init.checkpoint', sap['weights']), ('sap.descriptions', sap['descriptions']),
            ('data.split_file', sap['split_file']), ('data.data_dir', sap['images']))
    res, cfg = _run(sweep.task_spec('configs/sap_b2n.py', task), SAP_OVERRIDES + data,
                    os.path.join(workdir, 'run'), None)
    return {'steps': res['train']['steps'], 'accuracies': [res[k] for k in ('base', 'novel', 'hm')],
            'files': [os.path.join(workdir, 'run', 'b2n.json'),
                      os.path.join(workdir, 'run', 'base', 'tuned', 'params')]}
  return {'steps': res['steps'], 'num_classes': res['num_classes'], 'want_classes': want_classes,
          'accuracies': [res['final'][s] for s in cfg.data.eval_splits],
          'files': [os.path.join(workdir, 'results.json'),
                    os.path.join(workdir, 'tuned', 'params')]}


# ----------------------------------------------------------------------------- worker


def _share_sources() -> None:
  """Data sources built once per data config (each case's config is locked and read-only)."""
  import functools
  import ml_collections
  from prompt_jax.train import trainer as train
  real = train.data_registry.get_source

  @functools.cache
  def by_key(key: str):
    return real(ml_collections.ConfigDict(json.loads(key)))

  train.data_registry.get_source = lambda cfg: by_key(cfg.to_json(sort_keys=True))


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser()
  p.add_argument('--cases', required=True)
  p.add_argument('--assets', required=True)
  p.add_argument('--out', required=True)
  p.add_argument('--compilation_cache', default='')
  args = p.parse_args(argv)
  import jax
  if args.compilation_cache:
    jax.config.update('jax_compilation_cache_dir', args.compilation_cache)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  _share_sources()
  with open(args.cases) as f:
    cases = json.load(f)
  with open(args.assets) as f:
    assets = json.load(f)
  for case in cases:
    t0, c0 = time.time(), time.process_time()
    record = dict(case, id=case_id(case['kind'], case['name'], case['task']))
    try:
      record['result'] = run_case(case, assets, tempfile.mkdtemp(dir=assets['workdir']))
      record['ok'] = True
    except Exception as e:  # the case records the error
      record.update(ok=False, error_type=type(e).__name__, error=str(e),
                    traceback=traceback.format_exc())
    record.update(seconds=time.time() - t0, cpu_seconds=time.process_time() - c0)
    with open(args.out, 'a') as f:
      f.write(json.dumps(record) + '\n')
  return 0


if __name__ == '__main__':
  sys.exit(main())
