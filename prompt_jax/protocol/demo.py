"""The offline demo: pretrain a micro ViT on digits 0-4, save it as an original-format .npz, then
prompt-tune on the held-out digits 5-9 task and compare linear probe, VPT-shallow and VPT-deep.

Every stage goes through the same code a real run uses: `train.train_and_evaluate` (full fine-tuning
for pretraining), the .npz checkpoint loader, and the VPT method.
"""

from __future__ import annotations

import os
import platform
from typing import Any


import jax
import ml_collections
import numpy as np
from absl import logging

from prompt_jax.train import checkpointing
from prompt_jax.train import trainer as train
from prompt_jax.util import host
from prompt_jax.util import tree
from prompt_jax.train import workdir as workdir_lib
from prompt_jax.util import config as config_lib



def pretrain_overrides(d: ml_collections.ConfigDict) -> dict[str, Any]:
  """Full fine-tuning of a random micro ViT on digits 0-4 (`d`: config.demo)."""
  return {
      'program': 'train', 'method': d.pretrain_method, 'init.checkpoint': 'random',
      'init.format': 'npz', 'data.task': 'pretrain', 'data.train_split': 'train',
      'data.eval_splits': ('val',), 'data.val_split': 'val', 'train.epochs': d.pretrain_epochs,
      'train.optimizer': 'adamw', 'train.lr': d.pretrain_lr, 'train.wd': 0.05,
      'train.lr_scale_by_batch': False, 'train.warmup_epochs': 2, 'train.schedule_per': 'step',
      'train.eval_every_epochs': d.pretrain_epochs, 'train.export': False,
      'model.head_init': 'zeros', 'model.head_bias_init': 0.0}


def _override(cfg: ml_collections.ConfigDict, updates: dict[str, Any]) -> ml_collections.ConfigDict:
  cfg = ml_collections.ConfigDict(cfg.to_dict())  # unlocked copy
  for dotted, value in updates.items():
    config_lib.set_field(cfg, dotted, value, what='config key')
  cfg.lock()
  return cfg


def save_npz(params: Any, path: str) -> str:
  """Writes params with the original ViT .npz key layout ('/'-joined, float32)."""
  flat = tree.flat(jax.device_get(params))
  np.savez(path, **{k: np.asarray(v, np.float32) for k, v in flat.items()})
  return path


def pretrain(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Full fine-tuning of a random micro ViT on digits 0-4; returns the .npz path."""
  cfg = _override(config, pretrain_overrides(config.demo))
  path = os.path.join(workdir, 'pretrained_digits.npz')
  if os.path.exists(path):
    return path
  run_dir = os.path.join(workdir, 'pretrain')
  res = train.train_and_evaluate(cfg, run_dir)
  logging.info('pretraining val accuracy %.3f', res['val'])
  return save_npz(checkpointing.restore_state(run_dir)['trainable'], path)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Pretrain (cached), then each run in `config.demo.runs`; prints and returns the table."""
  table_of_runs = config.demo.run_table
  unknown = [n for n in config.demo.runs if n not in table_of_runs]
  if unknown:
    raise ValueError(f'config.demo.runs: unknown {unknown}; choose from {list(table_of_runs)} '
                     '(config.demo.run_table)')
  load = os.getloadavg()[0]
  os.makedirs(workdir, exist_ok=True)
  npz = pretrain(config, workdir)
  table = {}
  for name in config.demo.runs:
    cfg = _override(config, {'program': 'train', 'init.checkpoint': npz, 'init.format': 'npz',
                             **config_lib.flatten(table_of_runs[name])})
    res = train.train_and_evaluate(cfg, os.path.join(workdir, name))
    table[name] = {'val200': res['val200'], 'test': res['test'],
                   'trainable_params': res['trainable_params']}
  lines = ['| run | trainable params | val acc | test acc |', '|---|---|---|---|']
  lines += [f"| {k} | {v['trainable_params']} | {v['val200']:.3f} | {v['test']:.3f} |"
            for k, v in table.items()]
  print('\n'.join(lines))
  workdir_lib.write_json(os.path.join(workdir, 'demo_results.json'), table)
  summary = {'seed': int(config.seed), 'drop_last': bool(config.train.drop_last),
             'machine': machine(load), 'runs': table}
  workdir_lib.write_json(os.path.join(workdir, 'demo_summary.json'), summary)  # docs/demo_results
  return table


def machine(load: float) -> str:
  """Where the numbers were measured: platform, CPU model and cores, JAX backend and version, and
  `load` (the 1-minute load average when the demo started). Float rounding, and so the trained
  numbers, differ between CPU models."""
  return (f'{platform.system()} {platform.machine()}, {host.cpu_model()}, '
          f'{os.cpu_count()} CPU cores, jax {jax.__version__} on {jax.default_backend()}, '
          f'load {load:.1f}')


README_BEGIN = ('<!-- demo results: generated from docs/demo_results.json by '
                'tools/docs_gen.py -->')
README_END = '<!-- end of demo results -->'


def readme_block(summaries: list[dict[str, Any]]) -> str:
  """The README's demo table from demo summaries (`demo_summary.json` of runs with different
  seeds): test accuracy per run, mean ± std over the seeds when there are several."""
  names = list(summaries[0]['runs'])
  seeds = [s['seed'] for s in summaries]
  lines = [README_BEGIN, '', '| run | trainable params | test acc | val acc |', '|---|---|---|---|']
  for n in names:
    test = np.array([s['runs'][n]['test'] for s in summaries])
    val = np.array([s['runs'][n]['val200'] for s in summaries])
    fmt = (lambda a: f'{a.mean():.3f} ± {a.std():.3f}') if len(seeds) > 1 else (
        lambda a: f'{a[0]:.3f}')
    lines.append(f"| {n} | {summaries[0]['runs'][n]['trainable_params']} | {fmt(test)} | "
                 f'{fmt(val)} |')
  lines += ['', f'Seed{"s" if len(seeds) > 1 else ""} {", ".join(map(str, seeds))}; '
            f"train.drop_last={summaries[0]['drop_last']}; measured on {summaries[0]['machine']}.",
            '', README_END]
  return '\n'.join(lines)
