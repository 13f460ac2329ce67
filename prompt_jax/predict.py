"""Evaluate or predict from an export: a run's tuned/ (or a PyTorch state dict) on its backbone.

  prompt-jax-predict --tuned=/tmp/run/tuned --weights=ViT-B_16.npz --split=test \\
      [--data_dir=$HOME/tensorflow_datasets] [--out=eval.json]
  prompt-jax-predict --tuned=/tmp/run/tuned --weights=ViT-B_16.npz --images=photos/ \\
      [--out=predictions.csv] [--top_k=5]
  (= python -m prompt_jax.predict ...)

--split scores a split of the run's own data source (its config.data; --data_dir replaces
data.data_dir) with the trainer's padded, masked batches, and writes {split, accuracy, n, ...} as
JSON. --images classifies image files (a folder, searched recursively, or files; sorted) through
the run's evaluation image path (`prompt_jax.preprocess`: decode as PIL, resize / crop as the
config's source, normalise) and writes CSV rows `path,top1,p_top1,top_k,p_top_k`.
--tuned may also be a `.safetensors` state dict in a release's names (`prompt_jax.torch_export`):
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
import os
import sys
from typing import Any

import numpy as np

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.webp', '.tif', '.tiff')


def load(tuned: str, weights: str, *, like: str | None = None, backbone_format: str | None = None,
         allow_other_backbone: bool = False) -> tuple[Any, dict[str, Any], Any]:
  """(model, params, config) from a tuned/ export or a release-named .safetensors state dict."""
  if tuned.endswith('.safetensors'):
    from prompt_jax import torch_export
    return torch_export.load_safetensors(weights, tuned, like=like,
                                         backbone_format=backbone_format,
                                         allow_other_backbone=allow_other_backbone)
  from prompt_jax import export
  return export.load_tuned(weights, tuned, backbone_format=backbone_format,
                           allow_other_backbone=allow_other_backbone)


def _logits_fn(model: Any):
  import jax
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
  from prompt_jax.data import registry
  source = registry.get_source(config.data)
  if split not in source.splits:
    raise ValueError(f'split {split!r} is not in {config.data.source}:{config.data.task}; its '
                     f'splits are {sorted(source.splits)}')
  from prompt_jax import evaluators
  logits_fn = _logits_fn(model)
  res = evaluators.on_split('top1', lambda images: logits_fn(params, images), source, split,
                            batch_size)
  return {'split': split, 'accuracy': res['accuracy'], 'n': res['n'],
          'task': str(config.data.get('task', '')), 'source': config.data.source}


def image_files(paths: Sequence[str]) -> list[str]:
  """Image files under `paths` (folders searched recursively), sorted."""
  out = []
  for p in paths:
    if os.path.isdir(p):
      for root, _, files in os.walk(p):
        out += [os.path.join(root, f) for f in files if f.lower().endswith(IMAGE_EXTENSIONS)]
    elif os.path.isfile(p):
      out.append(p)
    else:
      raise FileNotFoundError(f'{p}: no such image file or folder')
  if not out:
    raise FileNotFoundError(f'no image files ({", ".join(IMAGE_EXTENSIONS)}) under {list(paths)}')
  return sorted(os.path.abspath(f) for f in out)


def predict_files(model: Any, params: Any, config: Any, files: Sequence[str],
                  batch_size: int = 64) -> np.ndarray:
  """Class probabilities [N, C] of image files through the config's evaluation image path."""
  from PIL import Image
  from prompt_jax import api
  logits_fn = _logits_fn(model)
  probs = []
  for i in range(0, len(files), batch_size):
    raw = []
    for f in files[i:i + batch_size]:
      with Image.open(f) as im:
        raw.append(np.asarray(im.convert('RGB')))
    images = api.preprocess(raw, config)
    for chunk, n in _padded(images, batch_size):
      z = np.asarray(logits_fn(params, chunk), np.float64)[:n]
      e = np.exp(z - z.max(-1, keepdims=True))
      probs.append(e / e.sum(-1, keepdims=True))
  return np.concatenate(probs)


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


def _name_and_path(tuned: str) -> tuple[str, str]:
  """('NAME', 'DIR') of a NAME=DIR --tuned value, ('', tuned) of a plain path."""
  name, eq, path = tuned.partition('=')
  return (name, path) if eq and name and os.sep not in name else ('', tuned)


def _named_exports(tuned: Sequence[str]) -> dict[str, str] | list[str]:
  """NAME=DIR values as {name: dir}; plain DIRs as a list (named by their config's data.task)."""
  pairs = [_name_and_path(t) for t in tuned]
  if any(n for n, _ in pairs) and not all(n for n, _ in pairs):
    raise SystemExit('prompt-jax-predict: name every --tuned (NAME=DIR) or none')
  return dict(pairs) if pairs[0][0] else [p for _, p in pairs]


def main_tasks(a: argparse.Namespace) -> None:
  """Several --tuned: one backbone, mixed-task batches (`prompt_jax.load_tasks`)."""
  from prompt_jax.export import serving
  from prompt_jax.export import serving_io
  from prompt_jax import workdir as workdir_lib
  exports = _named_exports(a.tuned)
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
  from prompt_jax import console
  console.setup(verbose=False)  # as quiet as prompt-jax
  paths = [_name_and_path(t)[1] for t in a.tuned]
  for path in paths + ([a.weights] if a.weights != 'random' else []):
    if '://' not in path and not os.path.exists(path):
      raise SystemExit(f'prompt-jax-predict: {path} does not exist')
  if len(a.tuned) > 1:
    return main_tasks(a)
  a.tuned = paths[0]
  model, params, config = load(a.tuned, os.path.abspath(a.weights) if a.weights != 'random'
                               else 'random', like=a.like, backbone_format=a.weights_format,
                               allow_other_backbone=a.allow_other_backbone)
  if a.split:
    if a.data_dir:
      config.unlock()
      config.data.data_dir = a.data_dir
    res = evaluate_split(model, params, config, a.split, a.batch_size)
    res.update(tuned=os.path.abspath(a.tuned), weights=a.weights)
    out = a.out or f'eval_{a.split}.json'
    from prompt_jax import workdir as workdir_lib
    workdir_lib.write_json(out, res)
    print(f'{res["task"]} {a.split}: top-1 {res["accuracy"]:.4f} over {res["n"]} images -> {out}')
  else:
    files = image_files(a.images)
    probs = predict_files(model, params, config, files, a.batch_size)
    out = a.out or 'predictions.csv'
    write_predictions(out, files, probs, a.top_k)
    print(f'{len(files)} images -> {out}')


if __name__ == '__main__':
  main()
