"""What `config.program` runs: the generic programs here, and those a method declares
(`Method.programs`, e.g. SAP's 'b2n'). Light: imports nothing heavy until a program runs.

  program = programs.get(config)          # Program(run, result_file, effective, recorded, runs)
  results = program(config, workdir)
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any
from collections.abc import Callable

import ml_collections

Config = ml_collections.ConfigDict


@dataclasses.dataclass(frozen=True)
class Program:
  """run(config, workdir) -> results (a dict), written to workdir/`result_file`.
  `effective(config)`: the config the run records in that file (a program that changes the config,
  e.g. b2n's base-class training run, says how); `recorded(results)` reads it back (None: not
  recorded); the sweep compares the two. `runs(workdir, results)` -> `report.Run`s of a finished run
  for the sweep's table (None: the trainer's results.json, one Run), whose rows are `table`:
  (result split, row label) pairs (empty: the test split, final and epoch-selected)."""

  run: Callable[[Config, str], Any]
  result_file: str = 'results.json'
  effective: Callable[[Config], Config] = lambda config: config
  recorded: Callable[[dict[str, Any]], dict[str, Any] | None] = lambda r: r.get('config')
  runs: Callable[[str, dict[str, Any]], list[Any]] | None = None
  table: tuple[tuple[str, str], ...] = ()

  def __call__(self, config: Config, workdir: str) -> Any:
    return self.run(config, workdir)


def _train(config: Config, workdir: str) -> Any:
  from prompt_jax.train import trainer as train
  return train.train_and_evaluate(config, workdir)


def _demo(config: Config, workdir: str) -> Any:
  from prompt_jax.protocol import demo
  return demo.run(config, workdir)


def tuned_path(config: Config, workdir: str) -> str:
  """The export program 'evaluate' scores: config.evaluate.tuned, else workdir/tuned."""
  return config.evaluate.tuned or os.path.join(workdir, 'tuned')


def _evaluate(config: Config, workdir: str) -> Any:
  """Scores config.data.eval_splits (of config.data's source) with the export's params on
  init.checkpoint, as `prompt-jax-predict --split` does; writes workdir/evaluate.json."""
  import json
  from prompt_jax.export import predict
  from prompt_jax.train import workdir as workdir_lib
  tuned = tuned_path(config, workdir)
  weights = config.init.checkpoint
  model, params, _ = predict.load(
      tuned, weights if weights == 'random' or '://' in weights else os.path.abspath(weights),
      backbone_format=config.init.format,
      allow_other_backbone=config.evaluate.allow_other_backbone)
  splits = {s: predict.evaluate_split(model, params, config, s, config.train.eval_batch_size)
            for s in config.data.eval_splits}
  res = {'program': 'evaluate', 'tuned': os.path.abspath(tuned) if '://' not in tuned else tuned,
         'weights': weights, 'task': str(config.data.task),
         'accuracy': {s: r['accuracy'] for s, r in splits.items()},
         'n': {s: r['n'] for s, r in splits.items()}, 'config': json.loads(config.to_json())}
  workdir_lib.write_json(os.path.join(workdir, EVALUATE_FILE), res)
  return res


EVALUATE_FILE = 'evaluate.json'

# The generic programs; a method adds its own through `Method.programs`.
PROGRAMS: dict[str, Program | Callable[[Config, str], Any]] = {
    'train': Program(_train),   # train + evaluate one method (results.json, exported prompts)
    # score data.eval_splits from an export (config.evaluate.tuned, else workdir/tuned)
    'evaluate': Program(_evaluate, result_file=EVALUATE_FILE),
    'demo': Program(_demo, result_file='demo_results.json'),  # offline digits demo
}


def _method_programs(method: str) -> dict[str, Program]:
  from prompt_jax.methods import base
  return dict(base.get(method).programs) if method in base.METHODS else {}


def names(method: str) -> list[str]:
  """The programs a config of `method` may run."""
  return [*PROGRAMS, *_method_programs(method)]


def problems(config: Config) -> list[str]:
  """[] when `config.method` runs `config.program`, else one message naming who runs it."""
  name, method = config.get('program', 'train'), config.method
  if name in names(method):
    return []
  from prompt_jax.methods import base
  others = [m for m in base.METHODS.names() if name in base.get(m).programs]
  where = (f'; {name!r} is a program of method {" / ".join(others)}: set --config.method' if others
           else '')
  return [f'program={name!r}: method {method!r} runs {names(method)}{where}']


def get(config: Config) -> Program:
  """The Program of `config.program` (generic, else the method's); ValueError naming the choices."""
  name = config.get('program', 'train')
  if name in PROGRAMS:
    p = PROGRAMS[name]
    return p if isinstance(p, Program) else Program(p)
  own = _method_programs(config.method)
  if name in own:
    return own[name]
  raise ValueError(f'program={name!r}: method {config.method!r} runs {names(config.method)}')
