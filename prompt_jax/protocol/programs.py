"""What `config.program` runs, by name: train, evaluate, demo, and the base-to-novel programs of
open-vocabulary methods (b2n, clip_zeroshot). Light: a program's module (the trainer, TensorFlow,
the models) is imported by name only when that program runs, so a bad config is answered first.

  program = programs.get(config)          # Program(run, result_file, effective, recorded, runs)
  results = program(config, workdir)
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any
from collections.abc import Callable

import ml_collections

from prompt_jax.methods.registry import METHODS
from prompt_jax.util import checks

Config = ml_collections.ConfigDict


def by_name(target: str) -> Callable[..., Any]:
  """'package.module:function' -> a function that imports the module when first called."""
  module, name = target.split(':')

  def call(*args: Any, **kwargs: Any) -> Any:
    return getattr(importlib.import_module(module), name)(*args, **kwargs)

  call.__name__ = name
  return call


@dataclasses.dataclass(frozen=True)
class Program:
  """run(config, workdir) -> results (a dict), written to workdir/`result_file`.
  `effective(config)`: the config the run records in that file (a program that changes the config,
  e.g. b2n's base-class training run, says how); `recorded(results)` reads it back (None: not
  recorded); the sweep compares the two. `runs(workdir, results)` -> `report.Run`s of a finished run
  for the sweep's table (None: the trainer's results.json, one Run), whose rows are `table`:
  (result split, row label) pairs (empty: the test split, final and epoch-selected).
  `open_vocabulary`: only methods that classify by class-name text (`Evaluation.open_vocabulary`)
  run it."""

  run: Callable[[Config, str], Any]
  result_file: str = 'results.json'
  effective: Callable[[Config], Config] = lambda config: config
  recorded: Callable[[dict[str, Any]], dict[str, Any] | None] = lambda r: r.get('config')
  runs: Callable[[str, dict[str, Any]], list[Any]] | None = None
  table: tuple[tuple[str, str], ...] = ()
  open_vocabulary: bool = False

  def __call__(self, config: Config, workdir: str) -> Any:
    return self.run(config, workdir)


EVALUATE_FILE = 'evaluate.json'
_B2N = 'prompt_jax.protocol.b2n'

PROGRAMS: dict[str, Program] = {
    # train + evaluate one method (results.json, exported prompts)
    'train': Program(by_name('prompt_jax.train.trainer:train_and_evaluate')),
    # score data.eval_splits from an export (config.evaluate.tuned, else workdir/tuned)
    'evaluate': Program(by_name('prompt_jax.export.predict:evaluate_program'),
                        result_file=EVALUATE_FILE),
    'demo': Program(by_name('prompt_jax.protocol.demo:run'), result_file='demo_results.json'),
    # CLIP base-to-novel (train on base classes; test base + novel + HM) and zero-shot CLIP alone.
    'b2n': Program(
        by_name(f'{_B2N}:run'), result_file='b2n.json', effective=by_name(f'{_B2N}:base_config'),
        recorded=lambda r: r.get('train', {}).get('config'), runs=by_name(f'{_B2N}:report_runs'),
        table=(('base', 'base classes'), ('novel', 'novel classes'), ('hm', 'harmonic mean')),
        open_vocabulary=True),
    'clip_zeroshot': Program(by_name(f'{_B2N}:zeroshot_run'), result_file='zeroshot.json',
                             recorded=lambda r: None, open_vocabulary=True),
}


TRAINS_ON_CONFIG = ('train', 'b2n')


def names(method: str) -> list[str]:
  """The programs a config of `method` may run."""
  open_vocabulary = method in METHODS and METHODS.get(method).evaluation.open_vocabulary
  return [n for n, p in PROGRAMS.items() if open_vocabulary or not p.open_vocabulary]


def problems(config: Config) -> list[str]:
  """[] when `config.method` runs `config.program`, else one message naming who runs it."""
  name, method = config.get('program', 'train'), config.method
  if name in names(method):
    return []
  if name in PROGRAMS:
    others = [m for m in METHODS.names() if METHODS.get(m).evaluation.open_vocabulary]
    return [f'program={name!r}: method {method!r} runs {names(method)}; {name!r} needs an '
            f'open-vocabulary method ({" / ".join(others)}): set --config.method']
  return [f'program={name!r}: method {method!r} runs {names(method)}']


def schedule_problems(config: Config) -> list[str]:
  """For the programs that train on `config.train` as given (the demo derives its runs'): a
  warm-up longer than training."""
  if config.get('program', 'train') in TRAINS_ON_CONFIG:
    return checks.warmup_within(config.train)
  return []


def get(config: Config) -> Program:
  """The Program of `config.program`; ValueError naming the choices."""
  name = config.get('program', 'train')
  if name in PROGRAMS and not PROGRAMS[name].open_vocabulary:
    return PROGRAMS[name]  # any method runs it: no method module (nor JAX) is imported
  if name not in names(config.method):
    raise ValueError(problems(config)[0])
  return PROGRAMS[name]
