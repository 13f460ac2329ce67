"""Many tasks, one backbone: one call scores a batch whose examples belong to different exports.

  model = prompt_jax.load_tasks({'dtd': 'runs/dtd/tuned', 'pets': 'runs/pets/tuned'},
                                weights='ViT-B_16.npz')
  logits, mask = model(images, ['dtd', 'pets', 'dtd'])  # images [B, S, S, 3], preprocessed
  top1 = logits.argmax(-1)                              # logits [B, C_max], -inf off the mask

One frozen backbone copy serves every task; each task adds only its exported subtree (prompts,
head, LoRA / adapter / bias deltas). Tasks whose models compute the same function of their params
(same method, options and shapes: equal jaxprs, see `_signature`) form a group: their subtrees
stack along a leading task axis, and each example runs the single-task model on its own task's
slice (`jax.vmap` over examples and gathered params), so every row is that task's own result.
Groups that differ (another prompt count or method) each score their rows of the batch, and the
rows are put back in order. Heads of fewer classes are padded with zero columns to the largest
class count C_max; their logits beyond the task's own classes are -inf and `mask` [B, C_max] is
False there.

All exports must hold one backbone digest (`BackboneMismatchError` names the one that differs)
and one input size; SAP (a CLIP backbone of its own) is refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import Mesh

from prompt_jax.checkpoints import backbone as backbone_lib
from prompt_jax.export import tuned as export
from prompt_jax.methods import base
from prompt_jax.train import sharding
from prompt_jax.util import tree

HEAD = ('head/kernel', 'head/bias')


@dataclasses.dataclass(frozen=True)
class Task:
  """One export: its name, folder, config and class count."""

  name: str
  path: str
  config: Any
  num_classes: int


@dataclasses.dataclass
class _Group:
  """Tasks of one model function: `stacked` holds their subtrees along a leading task axis."""

  model: Any
  stacked: Any            # {path: [T_g, ...]} nested, on the mesh (replicated)
  tasks: np.ndarray       # [T_g] global task indices
  mixed: Any              # jitted (backbone, stacked, images [b,S,S,3], local ids [b]) -> [b, C]
  single: Any             # jitted (backbone, stacked, images [b,S,S,3], one local id) -> [b, C]


def _restore(path: str) -> dict[str, np.ndarray]:
  """The export's params/ subtree, flat, as host arrays."""
  tuned = ocp.StandardCheckpointer().restore(os.path.join(path, 'params'))
  return {k: np.asarray(v) for k, v in tree.flat(tuned).items()}


def _pad_head(flat: dict[str, np.ndarray], num_classes: int, width: int
              ) -> dict[str, np.ndarray] | None:
  """`flat` with head/kernel [D, C] and head/bias [C] padded by zero columns to `width`; None
  when the export has no such head."""
  k, b = flat.get(HEAD[0]), flat.get(HEAD[1])
  if k is None or b is None or k.shape[-1] != num_classes or b.shape != (num_classes,):
    return None
  out = dict(flat)
  out[HEAD[0]] = np.pad(k, [(0, 0)] * (k.ndim - 1) + [(0, width - num_classes)])
  out[HEAD[1]] = np.pad(b, (0, width - num_classes))
  return out


def _shapes(x: Any) -> Any:
  return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), x)


def _signature(model: Any, flat: dict[str, np.ndarray], backbone: Any, image_size: int
               ) -> tuple[Any, ...]:
  """What decides the function params -> logits: the jaxpr of one example's forward pass (with
  its constants) and the subtree's paths and shapes. Equal signatures: one stacked group."""
  def fwd(tuned, frozen, images):
    return model.apply({'params': tree.merge(tuned, frozen)}, images)[0]
  closed = jax.make_jaxpr(fwd)(_shapes(tree.nest(flat)), _shapes(backbone),
                               jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32))
  consts = tuple(np.asarray(c).tobytes() + str(np.shape(c)).encode() for c in closed.consts)
  layout = tuple((k, v.shape, str(v.dtype)) for k, v in sorted(flat.items()))
  return str(closed.jaxpr), consts, layout


def _group_fns(model: Any):
  """jits of: each example through `model` with its own task's slice of the stacked subtrees
  (ids [b]); and every example with one task's slice (a scalar id: the single-task model)."""
  def own(frozen, stacked, i):
    return tree.merge(jax.tree_util.tree_map(lambda s: s[i], stacked), frozen)

  def mixed(frozen, stacked, images, ids):
    def one(image, i):
      return model.apply({'params': own(frozen, stacked, i)}, image[None])[0][0]
    return jax.vmap(one)(images, ids)

  def single(frozen, stacked, images, i):
    return model.apply({'params': own(frozen, stacked, i)}, images)[0]
  return jax.jit(mixed), jax.jit(single)


def _bucket(n: int, total: int, multiple: int) -> int:
  """Rows a sub-batch of `n` (of a `total`-row batch) is padded to: the batch's own size when it is
  all of it, else the next power of two (few compilations); a multiple of the data devices."""
  rows = total if n == total else 1 << max(n - 1, 0).bit_length()
  return -(-rows // multiple) * multiple


class MultiTaskModel:
  """`model(images, task_ids) -> (logits [B, C_max] float32, mask [B, C_max] bool)`.

  images: [B, S, S, 3] float, each preprocessed by its own task's config (`prompt_jax.preprocess`);
  task_ids: [B] task indices (the order of `names`) or names. Row b of logits equals its task's
  single-task model on images[b] in the first `num_classes[task]` columns, -inf after them.
  """

  def __init__(self, tasks: Sequence[Task], backbone: Any, groups: Sequence[_Group], mesh: Mesh):
    self.tasks = tuple(tasks)
    self.names = tuple(t.name for t in tasks)
    self.num_classes = np.array([t.num_classes for t in tasks], np.int64)
    self.backbone = backbone
    self.groups = list(groups)
    self.mesh = mesh
    self._group_of = np.zeros(len(tasks), np.int64)
    self._local = np.zeros(len(tasks), np.int32)
    for g, group in enumerate(self.groups):
      self._group_of[group.tasks] = g
      self._local[group.tasks] = np.arange(len(group.tasks))

  @property
  def max_classes(self) -> int:
    return int(self.num_classes.max())

  def task_ids(self, tasks: Sequence[Any]) -> np.ndarray:
    """[B] task indices from indices or names; a name or index not loaded is a ValueError."""
    index = {n: i for i, n in enumerate(self.names)}
    out = []
    for t in tasks:
      if isinstance(t, (str, np.str_)):
        if t not in index:
          raise ValueError(f'task {t!r} is not loaded; the tasks are {list(self.names)}')
        out.append(index[t])
      else:
        if not 0 <= int(t) < len(self.names):
          raise ValueError(f'task id {t} is out of range: {len(self.names)} tasks are loaded')
        out.append(int(t))
    return np.asarray(out, np.int64).reshape(-1)

  def _place(self, x: np.ndarray) -> jax.Array:
    return jax.device_put(x, sharding.batch_sharding(self.mesh))

  def __call__(self, images: Any, task_ids: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    ids = self.task_ids(task_ids)
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or len(images) != len(ids):
      raise ValueError(f'images {images.shape} and task_ids ({len(ids)}) must be [B, S, S, 3] and '
                       '[B]: one task per image')
    out = np.full((len(ids), self.max_classes), -np.inf, np.float32)
    for g, group in enumerate(self.groups):
      rows = np.nonzero(self._group_of[ids] == g)[0]
      if not len(rows):
        continue
      size = _bucket(len(rows), len(ids), self.mesh.size)
      take = np.concatenate([rows, np.repeat(rows[:1], size - len(rows))])
      local = self._local[ids[take]]
      if (local == local[0]).all():  # one task: its own model, no per-example gathers
        z = group.single(self.backbone, group.stacked, self._place(images[take]), local[0])
      else:
        z = group.mixed(self.backbone, group.stacked, self._place(images[take]),
                        self._place(local))
      z = np.asarray(z, np.float32)[:len(rows)]
      out[rows, :z.shape[-1]] = z
    mask = np.arange(self.max_classes)[None] < self.num_classes[ids][:, None]
    return np.where(mask, out, -np.inf).astype(np.float32), mask


def _named(exports: Mapping[str, str] | Sequence[str]) -> list[tuple[str, str]]:
  if isinstance(exports, Mapping):
    return [(str(k), os.path.abspath(v)) for k, v in exports.items()]
  return [('', os.path.abspath(p)) for p in exports]


def _read(exports: Mapping[str, str] | Sequence[str], weights: str, backbone_format: str | None
          ) -> list[tuple[Task, Any, dict[str, Any], dict[str, np.ndarray]]]:
  """(task, prepared, meta, flat subtree) of every export, checked to share one backbone."""
  named = _named(exports)
  if not named:
    raise ValueError('load_tasks needs at least one export (a name -> tuned/ folder mapping)')
  out = []
  for name, path in named:
    config, meta, prepared = export.read_export(path, weights, backbone_format)
    if base.get(config.method).model.build_backbone is not None:
      raise ValueError(f'{path}: method {config.method!r} runs on a backbone of its own, not the '
                       'shared ViT; serve it alone with prompt_jax.load_tuned')
    name = name or str(config.data.get('task', '')) or os.path.basename(os.path.dirname(path))
    out.append((Task(name, path, config, int(meta['num_classes'])), prepared, meta,
                _restore(path)))
  names = [t.name for t, *_ in out]
  if len(set(names)) != len(names):
    raise ValueError(f'two exports share a task name ({names}): name them with a mapping')
  first, _, meta0, _ = out[0]
  for task, _, meta, _ in out:
    want = meta.get('backbone_digest')
    if want is None:
      raise export.ExportError(f'{task.path}/meta.json records no backbone_digest: export it '
                               'again to serve it with other tasks')
    if want != meta0.get('backbone_digest'):
      raise export.BackboneMismatchError(
          f'{task.path} was tuned on backbone {want[:16]}..., not the '
          f'{meta0["backbone_digest"][:16]}... of {first.path}: tasks of different backbones '
          'cannot share one; load it apart')
    if task.config.data.image_size != first.config.data.image_size:
      raise ValueError(f'{task.path} takes {task.config.data.image_size}px images, {first.path} '
                       f'{first.config.data.image_size}px: one batch holds one image size')
  return out


def load_tasks(exports: Mapping[str, str] | Sequence[str], weights: str, *,
               backbone_format: str | None = None, allow_other_backbone: bool = False,
               mesh: Mesh | None = None) -> MultiTaskModel:
  """One model serving several exports tuned on one backbone (module docstring).

  exports: {task name: tuned/ folder}, or folders (named by their config's data.task); weights:
  the backbone checkpoint they were tuned on ('random' for tests); its digest must be theirs
  unless `allow_other_backbone`. mesh: the device mesh (default: data-parallel over every device,
  as training); the batch splits over it, the backbone and subtrees are replicated.
  """
  read = _read(exports, weights, backbone_format)
  first = read[0][0]
  method = base.get(first.config.method)
  frozen = backbone_lib.load(method, first.config, method.arch(first.config))
  meta = read[0][2]
  export.check_backbone(tree.digest(frozen), meta.get('backbone_digest'), first.path, weights,
                        meta.get('backbone_checkpoint'), allow_other_backbone=allow_other_backbone)
  mesh = mesh or sharding.make_mesh(first.config.mesh)
  frozen = jax.device_put(frozen, sharding.frozen_shardings(mesh, frozen))
  width = max(t.num_classes for t, *_ in read)
  keyed: dict[Any, list[tuple[int, Any, dict[str, np.ndarray]]]] = {}
  for i, (task, prepared, _, flat) in enumerate(read):
    padded = _pad_head(flat, task.num_classes, width)
    classes = width if padded is not None else task.num_classes
    model = base.get(task.config.method).build(task.config, classes, prepared)
    flat = padded if padded is not None else flat
    key = _signature(model, flat, frozen, task.config.data.image_size)
    keyed.setdefault(key, []).append((i, model, flat))
  groups = []
  for members in keyed.values():
    stacked = {k: np.stack([m[2][k] for m in members]) for k in members[0][2]}
    stacked = jax.device_put(tree.nest(stacked), sharding.replicated(mesh))
    model = members[0][1]
    groups.append(_Group(model, stacked, np.array([m[0] for m in members]),
                         *_group_fns(model)))
  return MultiTaskModel([t for t, *_ in read], frozen, groups, mesh)
