"""Evaluate or predict from an export: a run's tuned/ (or a PyTorch state dict) on its backbone.

  prompt-jax-predict --tuned=/tmp/run/tuned --weights=ViT-B_16.npz --split=test \\
      [--data_dir=$HOME/tensorflow_datasets] [--out=eval.json]
  prompt-jax-predict --tuned=/tmp/run/tuned --weights=ViT-B_16.npz --images=photos/ \\
      [--out=predictions.csv] [--top_k=5]
  (= python -m prompt_jax.export.predict ...)

--split scores a split of the run's own data source (its config.data; --data_dir replaces
data.data_dir) with the trainer's padded, masked batches, and writes {split, accuracy, n, ...} as
JSON. --images classifies image files (a folder, searched recursively, or files; sorted) through
the run's evaluation image path (decoded by the trainer's own decoder, `preprocess.read_image`;
resized / cropped as the config's source, normalised) and writes CSV rows
`path,top1,p_top1,top_k,p_top_k`; a file that does not decode is named on stderr and skipped, the
rest are scored, and the exit status is then non-zero.
--tuned may also be a `.safetensors` state dict in a release's names (`export/torch_state.py`):
--like gives the tuned/ export or config that defines its model (default: the file's metadata).
The backbone digest check of `load_tuned` applies (--allow_other_backbone to insist).

Several tasks on one backbone (`prompt_jax.load_tasks`): repeat --tuned (NAME=DIR names a task;
default: its config's data.task). --images then takes a CSV of `path,task` rows or folders of one
subfolder per task and writes `path,task,top1,p_top1,...` rows, mixed-task batches through one
backbone copy; --split scores every export's split and writes {task: {accuracy, n, ...}}.
  prompt-jax-predict --tuned=runs/dtd/tuned --tuned=runs/pets/tuned --weights=ViT-B_16.npz \\
      --images=photos.csv
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
import csv
import json
import os
import sys
from typing import Any, NoReturn

import jax
import numpy as np

from prompt_jax import evaluators
from prompt_jax.data import eval_image
from prompt_jax.data import preprocess
from prompt_jax.export.images import IMAGE_EXTENSIONS, image_files, read_images  # noqa: F401
from prompt_jax.data import registry
from prompt_jax.export import serving
from prompt_jax.export import serving_io
from prompt_jax.export import torch_state as torch_export
from prompt_jax.export import tuned as export
from prompt_jax.train import preflight
from prompt_jax.train import workdir as workdir_lib
from prompt_jax.util import console



def load(tuned: str, weights: str, *, like: str | None = None, backbone_format: str | None = None,
         allow_other_backbone: bool = False) -> tuple[Any, dict[str, Any], Any]:
  """(model, params, config) from a tuned/ export or a release-named .safetensors state dict."""
  if tuned.endswith('.safetensors'):
    return torch_export.load_safetensors(weights, tuned, like=like,
                                         backbone_format=backbone_format,
                                         allow_other_backbone=allow_other_backbone)
  return export.load_tuned(weights, tuned, backbone_format=backbone_format,
                           allow_other_backbone=allow_other_backbone)


def _logits_fn(model: Any):
  return jax.jit(lambda params, images: model.apply({'params': params}, images)[0])


def _padded(images: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, int]]:
  """Fixed-size batches (one compilation): (batch, number of real rows)."""
  for i in range(0, len(images), batch_size):
    chunk = images[i:i + batch_size]
    n = len(chunk)
    if n < batch_size:
      chunk = np.concatenate([chunk, np.repeat(chunk[:1], batch_size - n, 0)])
    yield chunk, n


def evaluate_split(model: Any, params: Any, config: Any, split: str, batch_size: int = 64
                   ) -> dict[str, Any]:
  """Top-1 over `split` of config.data's source (padding rows masked), as the trainer scores it."""
  source = registry.get_source(config.data)
  if split not in source.splits:
    raise ValueError(f'split {split!r} is not in {config.data.source}:{config.data.task}; its '
                     f'splits are {sorted(source.splits)}')
  logits_fn = _logits_fn(model)
  res = evaluators.on_split('top1', lambda images: logits_fn(params, images), source, split,
                            batch_size)
  return {'split': split, 'accuracy': res['accuracy'], 'n': res['n'],
          'task': str(config.data.get('task', '')), 'source': config.data.source}


def tuned_path(config: Any, workdir: str) -> str:
  """The export program 'evaluate' scores: config.evaluate.tuned, else workdir/tuned."""
  return config.evaluate.tuned or os.path.join(workdir, 'tuned')


def evaluate_program(config: Any, workdir: str) -> dict[str, Any]:
  """program='evaluate': scores config.data.eval_splits (of config.data's source) with the export's
  params on init.checkpoint, as `prompt-jax-predict --split` does; writes workdir/evaluate.json."""
  tuned = tuned_path(config, workdir)
  weights = config.init.checkpoint
  model, params, _ = load(
      tuned, weights if weights == 'random' or '://' in weights else os.path.abspath(weights),
      backbone_format=config.init.format,
      allow_other_backbone=config.evaluate.allow_other_backbone)
  splits = {s: evaluate_split(model, params, config, s, config.train.eval_batch_size)
            for s in config.data.eval_splits}
  res = {'program': 'evaluate', 'tuned': os.path.abspath(tuned) if '://' not in tuned else tuned,
         'weights': weights, 'task': str(config.data.task),
         'accuracy': {s: r['accuracy'] for s, r in splits.items()},
         'n': {s: r['n'] for s, r in splits.items()}, 'config': json.loads(config.to_json())}
  workdir_lib.write_json(os.path.join(workdir, 'evaluate.json'), res)
  return res


def predict_images(model: Any, params: Any, config: Any, images: Sequence[np.ndarray],
                   batch_size: int = 64) -> np.ndarray:
  """Class probabilities [N, C] of decoded uint8 [H, W, 3] images through the config's
  evaluation image path."""
  logits_fn = _logits_fn(model)
  probs = []
  for i in range(0, len(images), batch_size):
    batch = eval_image.preprocess(list(images[i:i + batch_size]), config)
    for chunk, n in _padded(batch, batch_size):
      z = np.asarray(logits_fn(params, chunk), np.float64)[:n]
      e = np.exp(z - z.max(-1, keepdims=True))
      probs.append(e / e.sum(-1, keepdims=True))
  return np.concatenate(probs)


def predict_files(model: Any, params: Any, config: Any, files: Sequence[str],
                  batch_size: int = 64) -> np.ndarray:
  """Class probabilities [N, C] of image files (decoded as the trainer does; one that does not
  decode raises `preprocess.ImageError`)."""
  return predict_images(model, params, config, [preprocess.read_image(f) for f in files],
                        batch_size)


def write_predictions(path: str, files: Sequence[str], probs: np.ndarray, top_k: int) -> None:
  k = min(top_k, probs.shape[-1])
  order = np.argsort(-probs, -1, kind='stable')[:, :k]
  with open(path, 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['path'] + [c for j in range(1, k + 1) for c in (f'top{j}', f'p_top{j}')])
    for name, o, p in zip(files, order, probs):
      w.writerow([name] + [v for c in o for v in (int(c), f'{p[c]:.6f}')])


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog='prompt-jax-predict', description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--tuned', required=True, action='append',
                 help="a run's tuned/ folder, or a .safetensors file; repeat it (NAME=DIR) to "
                      'serve several tasks on one backbone')
  p.add_argument('--weights', required=True,
                 help='the backbone checkpoint the prompts were tuned on (as --config.init.'
                      "checkpoint; 'random' for a seeded random backbone)")
  p.add_argument('--weights_format', default=None, help="default: the run's init.format")
  what = p.add_mutually_exclusive_group(required=True)
  what.add_argument('--split', help="score this split of the run's data source, e.g. test")
  what.add_argument('--images', nargs='+',
                    help='image files or folders to classify (several --tuned: a CSV of '
                         'path,task rows, or folders of one subfolder per task)')
  p.add_argument('--data_dir', default=None, help="replaces the run's data.data_dir")
  p.add_argument('--like', default=None, help='for a .safetensors --tuned: the tuned/ export or '
                                               'config file that defines its model')
  p.add_argument('--out', default=None,
                 help='output file (default: eval_<split>.json / predictions.csv here)')
  p.add_argument('--batch_size', type=int, default=64)
  p.add_argument('--top_k', type=int, default=5)
  p.add_argument('--allow_other_backbone', action='store_true')
  return p.parse_args(argv)


def fail(msg: str, code: int = 2) -> NoReturn:
  """One line on stderr, then exit `code`."""
  print(f'prompt-jax-predict: {msg}', file=sys.stderr)
  sys.exit(code)


def _check_tuned(a: argparse.Namespace) -> None:
  """The inputs that are paths, checked before TensorFlow or the model loads."""
  for path in (a.tuned,) + ((a.weights,) if a.weights != 'random' else ()):
    if '://' not in path and not os.path.exists(path):
      fail(f'{path} does not exist')
  if a.tuned.endswith('.safetensors'):
    torch_export.read_safetensors(a.tuned)
  elif os.path.isdir(a.tuned):
    export.verify(os.path.abspath(a.tuned))
    if a.split:
      check_split(a.split, a.tuned)
  else:
    fail(f"{a.tuned} is neither a run's tuned/ directory nor a .safetensors state dict")


def check_split(split: str, tuned: str) -> None:
  """A split the export's data source does not offer, answered from its config.json before
  TensorFlow or the model loads (where the source's split names are known without loading it)."""
  with open(os.path.join(tuned, 'config.json')) as f:
    data = json.load(f).get('data', {})
  names = preflight.split_names(data)
  if names is not None and split not in names:
    fail(f"split {split!r} is not in {data.get('source')}:{data.get('task')} ({tuned}); its "
         f'splits are {sorted(names)}')


def _read_inputs(files: list[str]) -> tuple[list[np.ndarray], list[str], dict[str, str]]:
  """Every image decoded before the model loads; undecodable ones named on stderr, skipped."""
  images, files, bad = read_images(files)
  for why in bad.values():
    print(f'prompt-jax-predict: skipped {why}', file=sys.stderr)
  if not images:
    fail(f'none of the {len(bad)} image files decodes')
  return images, files, bad


def _run(a: argparse.Namespace, files: list[str]) -> None:
  if a.images:
    images, files, bad = _read_inputs(files)
  model, params, config = load(a.tuned, os.path.abspath(a.weights) if a.weights != 'random'
                               else 'random', like=a.like, backbone_format=a.weights_format,
                               allow_other_backbone=a.allow_other_backbone)
  if a.allow_other_backbone:
    print('prompt-jax-predict: --allow_other_backbone: the backbone digest was not checked '
          '(recorded in the output)', file=sys.stderr)
  if a.split:
    if a.data_dir:
      config.unlock()
      config.data.data_dir = a.data_dir
    res = evaluate_split(model, params, config, a.split, a.batch_size)
    res.update(tuned=os.path.abspath(a.tuned), weights=a.weights,
               allow_other_backbone=a.allow_other_backbone)
    out = a.out or f'eval_{a.split}.json'
    workdir_lib.write_json(out, res)
    print(f'{res["task"]} {a.split}: top-1 {res["accuracy"]:.4f} over {res["n"]} images -> {out}')
    return
  probs = predict_images(model, params, config, images, a.batch_size)
  out = a.out or 'predictions.csv'
  write_predictions(out, files, probs, a.top_k)
  print(f'{len(files)} images -> {out}')
  if bad:
    fail(f'{len(bad)} of {len(files) + len(bad)} image files did not decode and were skipped '
         f'(named above); the other {len(files)} are in {out}', code=1)


def _name_and_path(tuned: str) -> tuple[str, str]:
  """('NAME', 'DIR') of a NAME=DIR --tuned value, ('', tuned) of a plain path."""
  name, eq, path = tuned.partition('=')
  return (name, path) if eq and name and os.sep not in name else ('', tuned)


def _named_exports(tuned: Sequence[str]) -> dict[str, str] | list[str]:
  """NAME=DIR values as {name: dir}; plain DIRs as a list (named by their config's data.task)."""
  pairs = [_name_and_path(t) for t in tuned]
  if any(n for n, _ in pairs) and not all(n for n, _ in pairs):
    fail('name every --tuned (NAME=DIR) or none')
  return dict(pairs) if pairs[0][0] else [p for _, p in pairs]


def main_tasks(a: argparse.Namespace) -> None:
  """Several --tuned: one backbone, mixed-task batches (`prompt_jax.load_tasks`)."""
  exports = _named_exports(a.tuned)
  for path in (exports.values() if isinstance(exports, dict) else exports):
    if '://' not in path and not os.path.isdir(path):
      fail(f"{path} is not a run's tuned/ directory")
    export.verify(os.path.abspath(path))
    if a.split and '://' not in path:
      check_split(a.split, path)
  console.setup(verbose=False)  # as quiet as prompt-jax
  model = serving.load_tasks(exports, os.path.abspath(a.weights) if a.weights != 'random'
                             else 'random', backbone_format=a.weights_format,
                             allow_other_backbone=a.allow_other_backbone)
  if a.split:
    if a.data_dir:
      for task in model.tasks:
        task.config.unlock()
        task.config.data.data_dir = a.data_dir
    res = serving_io.evaluate_tasks(model, a.split, a.batch_size)
    out = a.out or f'eval_{a.split}.json'
    workdir_lib.write_json(out, res)
    for name, r in res.items():
      print(f'{name} {a.split}: top-1 {r["accuracy"]:.4f} over {r["n"]} images')
    print(f'-> {out}')
    return
  items = serving_io.task_images(a.images, model.names)
  probs = serving_io.predict_tasks(model, items, a.batch_size)
  out = a.out or 'predictions.csv'
  classes = model.num_classes[model.task_ids([t for _, t in items])]
  serving_io.write_task_predictions(out, items, probs, classes, a.top_k)
  print(f'{len(items)} images of {len(model.names)} tasks -> {out}')


def main(argv: Sequence[str] | None = None) -> None:
  a = parse_args(sys.argv[1:] if argv is None else argv)
  try:
    for path in [_name_and_path(t)[1] for t in a.tuned] + (
        [a.weights] if a.weights != 'random' else []):
      if '://' not in path and not os.path.exists(path):
        fail(f'{path} does not exist')
    if len(a.tuned) > 1:
      return main_tasks(a)
    a.tuned = _name_and_path(a.tuned[0])[1]
    _check_tuned(a)  # the paths, before TensorFlow (console.setup imports it) or the model
    files = image_files(a.images) if a.images else []
    console.setup(verbose=False)  # as quiet as prompt-jax
    _run(a, files)
  except (ValueError, KeyError, FileNotFoundError) as e:  # ExportError, CheckpointError, ...
    msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    fail(' '.join(msg.split()))


if __name__ == '__main__':
  main()
