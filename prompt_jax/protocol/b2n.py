"""SAP's programs: the base-to-novel protocol and the zero-shot CLIP baseline
(`Method.programs` of 'sap': config.program = 'b2n' | 'clip_zeroshot').

  results = run(config, workdir)   # {'base': acc, 'novel': acc, 'hm': ..., 'zeroshot': {...}}
  python -m prompt_jax.main --config=configs/sap_b2n.py --workdir=/tmp/sap_dtd \
      --config.data.split_file=...            # config.program='b2n'; 'clip_zeroshot': baseline only

1. Train with the generic trainer on the BASE classes (`config.data.subset='base'`, the few-shot
   train split) into workdir/base (train.export must stay on: the tuned prompts are read back from
   workdir/base/tuned).
2. Evaluate the tuned model on the test split of the base classes and of the novel classes; for each
   class set the description tables / frozen features are rebuilt (`sap.prepare_classes`), the
   prompted text features are encoded once, and images are classified against them.
3. Zero-shot CLIP ("a photo of a {class}.") on the same two class sets, as the baseline.
Accuracies are top-1 in [0, 1]; hm = harmonic mean of base and novel.
"""

from __future__ import annotations

import os
from typing import Any

from ml_collections import ConfigDict
from collections.abc import Sequence

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections

from prompt_jax.checkpoints import backbone as backbone_lib
from prompt_jax import evaluators
from prompt_jax.util import tree
from prompt_jax.train import workdir as workdir_lib
from prompt_jax.data import registry as data_registry
from prompt_jax.methods import sap
from prompt_jax.protocol import report
from prompt_jax.models import clip as clip_lib

Config = ml_collections.ConfigDict
B2N_FILE = 'b2n.json'
ZEROSHOT_FILE = 'zeroshot.json'


def section(eval_split: str = 'test') -> ConfigDict:
  """`config.b2n`: the split on which base and novel classes are scored."""
  return ConfigDict(dict(eval_split=eval_split))  # split scored on base and novel classes


def with_subset(config: Config, subset: str) -> Config:
  c = ml_collections.ConfigDict(config.to_dict())
  c.data.subset = subset
  return c


def base_config(config: Config) -> Config:
  """The config of the base-class training run (recorded in b2n.json['train']['config'])."""
  c = with_subset(config, 'base')
  c.train.export = True
  return c


def tuned_params(config: Config, workdir: str) -> tuple[dict[str, Any], dict[str, Any]]:
  """(backbone params, backbone + tuned prompts) of a finished run in `workdir` (read from the
  exported workdir/tuned; SAP's only non-backbone frozen param, text_cache, is rebuilt later)."""
  import orbax.checkpoint as ocp
  backbone = backbone_lib.load(sap.SAP, config)
  tuned = ocp.StandardCheckpointer().restore(os.path.abspath(os.path.join(workdir, 'tuned',
                                                                          'params')))
  return backbone, tree.merge(jax.tree_util.tree_map(jnp.asarray, tuned), backbone)


def sap_accuracy(config: Config, bb_params: Any, params: Any, source: Any,
                 split: str = 'test') -> float:
  """Top-1 of the tuned SAP model on `source` (its own class set and descriptions)."""
  arch = sap.SAP.arch(config)
  backbone = sap.build_backbone(config, arch)
  prepared = sap.prepare_classes(config, backbone, bb_params, source.classnames)
  model = sap.build_model(config, arch, len(source.classnames), prepared)
  p = dict(params)
  p.pop('text_cache', None)
  text = jax.jit(lambda q: model.apply({'params': q}, method=sap.SAPModel.encode_descriptions))(p)
  if model.cache_text:
    p['text_cache'] = text
  fwd = jax.jit(lambda q, x: model.apply({'params': q}, x, text_features=text)[0])
  return evaluators.on_split('top1', lambda x: fwd(p, x), source, split,
                            config.train.eval_batch_size)['accuracy']


def zeroshot_accuracy(config: Config, bb_params: Any, source: Any, split: str = 'test',
                      template: str | None = None) -> float:
  """Zero-shot CLIP: argmax over classes of cos(image, text('a photo of a {class}.'))."""
  model = sap.build_backbone(config, sap.SAP.arch(config))
  template = template or config.sap.zs_template
  tok = sap.tokenizer_for(config, model)
  ids = tok.tokenize([template.format(classname=n.replace('_', ' ').lower())
                      for n in source.classnames])
  text = jnp.asarray(sap.encode_texts(model, bb_params, ids, config.sap.encode_batch))

  @jax.jit
  def fwd(x):
    img, _ = model.apply({'params': bb_params}, x)
    return clip_lib.l2_normalize(img) @ text.T

  return evaluators.on_split('top1', fwd, source, split,
                            config.train.eval_batch_size)['accuracy']


def harmonic(base_acc: float, novel_acc: float) -> dict[str, float]:
  return {'base': base_acc, 'novel': novel_acc, 'hm': sap.harmonic_mean(base_acc, novel_acc)}


def sources(config: Config, subsets: Sequence[str] = ('base', 'novel')) -> dict[str, Any]:
  return {s: data_registry.get_source(with_subset(config, s).data) for s in subsets}


def run(config: Config, workdir: str, *, zeroshot: bool = True) -> dict[str, Any]:
  """Trains on base classes, evaluates base and novel (and zero-shot CLIP); writes b2n.json."""
  from prompt_jax.train import trainer as train  # imports TensorFlow: only when b2n runs
  base_cfg = base_config(config)
  run_dir = os.path.join(workdir, 'base')
  train_results = train.train_and_evaluate(base_cfg, run_dir)
  backbone, params = tuned_params(base_cfg, run_dir)
  srcs = sources(config)
  split = (config.b2n if 'b2n' in config else section()).eval_split
  accs = {s: sap_accuracy(with_subset(config, s), backbone, params, src, split)
          for s, src in srcs.items()}
  results: dict[str, Any] = {'method': config.method, 'task': config.data.task,
                             **harmonic(accs['base'], accs['novel']),
                             'train': {k: v for k, v in train_results.items() if k != 'history'}}
  if zeroshot:
    zs = {s: zeroshot_accuracy(config, backbone, src, split) for s, src in srcs.items()}
    results['zeroshot'] = harmonic(zs['base'], zs['novel'])
  logging.info('base-to-novel: %s', {k: v for k, v in results.items() if k != 'train'})
  if jax.process_index() == 0:
    workdir_lib.write_json(os.path.join(workdir, B2N_FILE), results)
  return results


def zeroshot_run(config: Config, workdir: str) -> dict[str, Any]:
  """Only the zero-shot CLIP baseline (base / novel / hm), no training."""
  params = backbone_lib.load(sap.SAP, config)
  srcs = sources(config)
  zs = {s: zeroshot_accuracy(config, params, src) for s, src in srcs.items()}
  results = {'zeroshot': harmonic(zs['base'], zs['novel'])}
  workdir_lib.write_json(os.path.join(workdir, ZEROSHOT_FILE), results)
  return results


def report_runs(workdir: str, results: dict[str, Any]) -> list[Any]:
  """b2n.json (base / novel / harmonic mean, and the zero-shot CLIP baseline) as report runs."""
  train = results.get('train', {})
  common = dict(task=results.get('task', ''), seed=train.get('seed'),
                config=report.flat_config(train.get('config', {})))
  runs = [report.Run(path=workdir, method=results.get('method', sap.SAP.name),
                     variant=train.get('variant', sap.SAP.name),
                     results={'final': {k: results[k] for k in ('base', 'novel', 'hm')}},
                     **common)]
  if 'zeroshot' in results:
    runs.append(report.Run(path=workdir + '#zeroshot', method='clip', variant='clip_zeroshot',
                           results={'final': results['zeroshot']}, **common))
  return runs
