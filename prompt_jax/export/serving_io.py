"""Files in and out of a many-task model (`serving.MultiTaskModel`) for prompt-jax-predict.

Images with their tasks come as a CSV of `path,task` rows (paths relative to the CSV's folder;
a first row `path,task` is a header) or as folders holding one subfolder per task name. The
predictions CSV has one row per image: `path,task,top1,p_top1,...`, each row's probabilities over
its own task's classes (cells past its class count are empty).
"""

from __future__ import annotations

from collections.abc import Sequence
import csv
import os
from typing import Any

import numpy as np

from prompt_jax import evaluators
from prompt_jax.data import eval_image
from prompt_jax.data import registry
from prompt_jax.export import images as images_lib


def task_images(inputs: Sequence[str], names: Sequence[str]) -> list[tuple[str, str]]:
  """[(image path, task name)] from a `path,task` CSV or folders of one subfolder per task."""
  out = []
  for item in inputs:
    if item.lower().endswith('.csv'):
      with open(item, newline='') as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
      if rows and [c.strip() for c in rows[0][:2]] == ['path', 'task']:
        rows = rows[1:]
      base = os.path.dirname(os.path.abspath(item))
      for i, r in enumerate(rows):
        if len(r) < 2:
          raise ValueError(f'{item} row {i + 1}: {r} is not `path,task`')
        out.append((os.path.join(base, r[0].strip()), r[1].strip()))
    elif os.path.isdir(item):
      subs = sorted(d for d in os.listdir(item) if os.path.isdir(os.path.join(item, d)))
      if not subs:
        raise ValueError(f'{item} holds no task folders: one subfolder per task ({list(names)}) '
                         'or a CSV of path,task rows')
      for d in subs:
        out += [(f, d) for f in images_lib.image_files([os.path.join(item, d)])]
    else:
      raise FileNotFoundError(f'{item}: give a CSV of path,task rows or a folder of task folders')
  unknown = sorted({t for _, t in out} - set(names))
  if unknown:
    raise ValueError(f'tasks {unknown} have no --tuned export; the loaded tasks are {list(names)}')
  missing = [p for p, _ in out if not os.path.isfile(p)]
  if missing:
    raise FileNotFoundError(f'{len(missing)} image file(s) do not exist, e.g. {missing[0]}')
  return out


def _load(files: Sequence[str], config: Any) -> np.ndarray:
  """The images of `files`, decoded as the trainer does, through `config`'s evaluation path."""
  images, _, bad = images_lib.read_images(files)
  if bad:
    raise ValueError(f'{len(bad)} image file(s) do not decode: {next(iter(bad.values()))}')
  return eval_image.preprocess(images, config)


def predict_tasks(model: Any, items: Sequence[tuple[str, str]], batch_size: int = 64
                  ) -> np.ndarray:
  """Class probabilities [N, C_max] (0 past each row's classes): every image preprocessed by its
  own task's config, `batch_size` mixed-task images a call."""
  ids = model.task_ids([t for _, t in items])
  probs = []
  for i in range(0, len(items), batch_size):
    chunk, tid = items[i:i + batch_size], ids[i:i + batch_size]
    images = None
    for t in np.unique(tid):
      rows = np.nonzero(tid == t)[0]
      x = _load([chunk[r][0] for r in rows], model.tasks[t].config)
      if images is None:
        images = np.zeros((len(chunk),) + x.shape[1:], np.float32)
      images[rows] = x
    z, mask = model(images, tid)
    z = np.where(mask, z.astype(np.float64), -np.inf)
    e = np.exp(z - z.max(-1, keepdims=True))
    probs.append(e / e.sum(-1, keepdims=True))
  return np.concatenate(probs)


def write_task_predictions(path: str, items: Sequence[tuple[str, str]], probs: np.ndarray,
                           num_classes: Sequence[int], top_k: int) -> None:
  """CSV rows `path,task,top1,p_top1,...,top{k},p_top{k}` (k = min(top_k, C_max))."""
  k = min(top_k, probs.shape[-1])
  order = np.argsort(-probs, -1, kind='stable')[:, :k]
  with open(path, 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['path', 'task'] + [c for j in range(1, k + 1) for c in (f'top{j}', f'p_top{j}')])
    for (name, task), o, p, c in zip(items, order, probs, num_classes):
      cells = [v for cls in o[:min(k, c)] for v in (int(cls), f'{p[cls]:.6f}')]
      w.writerow([os.path.abspath(name), task] + cells + [''] * (2 * k - len(cells)))


def evaluate_tasks(model: Any, split: str, batch_size: int = 64) -> dict[str, Any]:
  """{task: {split, accuracy, n, source}}: each export's `split` of its own data source, scored
  through the shared model (one backbone for all)."""
  out = {}
  for t, task in enumerate(model.tasks):
    source = registry.get_source(task.config.data)
    if split not in source.splits:
      raise ValueError(f'split {split!r} is not in {task.name}\'s source; its splits are '
                       f'{sorted(source.splits)}')
    c = task.num_classes
    res = evaluators.on_split(
        'top1', lambda images, t=t, c=c: model(np.asarray(images), [t] * len(images))[0][:, :c],
        source, split, batch_size)
    out[task.name] = {'split': split, 'accuracy': res['accuracy'], 'n': res['n'],
                      'source': task.config.data.source, 'tuned': task.path}
  return out
