"""Many tasks on one backbone (`prompt_jax.load_tasks`): images per second of one mixed-task batch
against N separate single-task calls on the same images (each task's own model on its rows, as
`load_tuned` per export gives), and against one task's model on the whole batch; and parameter
memory of one shared backbone + N stacked subtrees against N full models (`load_tuned` each).

N exports per (method, variant) on a seeded random backbone, trainable params random, every task
`--classes` classes; the batch's rows cycle over the N tasks.

  python -m benchmarks.multitask [--variants=B/16,S/16] [--methods=vpt_deep,ship]
      [--tasks=1,4,19] [--batch=64] [--iters=3] [--image_size=224] [--memory_only]
  python -m benchmarks.multitask --variants=Mu/8 --image_size=32 --tasks=1,2 --batch=8  # smoke

Prints JSON (machine and load average included); nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import jax
import numpy as np

from benchmarks import common as bench
import prompt_jax
from prompt_jax.checkpoints import backbone as backbone_lib
from prompt_jax.export import tuned as export
from prompt_jax.util import tree
from prompt_jax.methods import base
from prompt_jax.models import vit

# name -> (method, options, prepared(depth, width, config) or None)
RECIPES = {
    'vpt_deep': ('vpt', dict(num_prompts=50, deep=True), None),
    'ship': ('ship', dict(num_prompts=50),
             lambda depth, width, c: {'anchors': tuple(range(0, depth, 3)),
                                      'bank': np.zeros((c.ship.num_prototypes, width),
                                                       np.float32)}),
}


def _exports(root: str, name: str, variant: str, n: int, classes: int, image_size: int
             ) -> list[str]:
  """`n` exports of recipe `name`: one model built, its trainable part drawn anew per task."""
  method, options, make_prepared = RECIPES[name]
  kw = dict(checkpoint='random', image_size=image_size, **options)
  config = prompt_jax.model_config(variant, method, **kw)
  arch = vit.decode_variant(variant)
  prepared = make_prepared(arch['depth'], arch['width'], config) if make_prepared else None
  _, params = prompt_jax.create_model(variant, method, num_classes=classes, prepared=prepared,
                                      **kw)
  trainable, frozen = prompt_jax.split_params(params, method, **options)
  digest = tree.digest(backbone_lib.load(base.get(method), config))
  out = []
  for t in range(n):
    rng = np.random.default_rng(t)
    tuned = jax.tree_util.tree_map(
        lambda a, rng=rng: rng.normal(0, 0.02, np.shape(a)).astype(np.float32), trainable)
    out.append(export.export_tuned(f'{root}/{name}_{t}', tuned, frozen, config, prepared or {},
                                   backbone_digest=digest))
  return out


def _separate(model: prompt_jax.export.serving.MultiTaskModel):
  """Each task's own single-task (model, params) (the shared backbone array, for speed)."""
  out = []
  for group in model.groups:
    fn = jax.jit(lambda p, x, m=group.model: m.apply({'params': p}, x)[0])
    for j in range(len(group.tasks)):
      own = jax.tree_util.tree_map(lambda s, j=j: s[j], group.stacked)
      out.append((fn, tree.merge(own, model.backbone)))
  return out


def measure(name: str, variant: str, n: int, args: argparse.Namespace) -> dict:
  with tempfile.TemporaryDirectory() as root:
    paths = _exports(root, name, variant, n, args.classes, args.image_size)
    model = prompt_jax.load_tasks({f't{t}': p for t, p in enumerate(paths)}, 'random')
  rng = np.random.default_rng(0)
  images = rng.normal(size=(args.batch, args.image_size, args.image_size, 3)).astype(np.float32)
  ids = np.arange(args.batch) % n
  singles = _separate(model)
  rows = [np.nonzero(ids == t)[0] for t in range(n)]

  def separate():
    for (fn, params), r in zip(singles, rows):
      if len(r):
        np.asarray(fn(params, images[r]))

  fn0, p0 = singles[0]
  times = bench.time_rounds({
      'mixed': lambda: model(images, ids),
      'separate': separate,
      'single_task': lambda: np.asarray(fn0(p0, images)),
  }, warmup=1, iters=args.iters)
  sec = {k: bench.median(v) for k, v in times.items()}
  backbone_mb = tree.count(model.backbone) * 4 / 2**20
  tuned_mb = sum(tree.count(g.stacked) for g in model.groups) * 4 / 2**20 / n
  shared, apart = backbone_mb + n * tuned_mb, n * (backbone_mb + tuned_mb)
  return {
      'recipe': name, 'variant': variant, 'tasks': n, 'batch': args.batch,
      'images_per_s': {k: args.batch / s for k, s in sec.items()},
      'mixed_over_separate': sec['separate'] / sec['mixed'],
      'mixed_over_single_task': sec['single_task'] / sec['mixed'],
      'params_mb': {'backbone': backbone_mb, 'per_task': tuned_mb, 'shared': shared,
                    'separate_models': apart},
      'memory_separate_over_shared': apart / shared,
      'load_average': bench.load_average(),
  }


def params_memory(name: str, variant: str, n: int, args: argparse.Namespace) -> dict:
  """Parameter MB of one backbone + n tuned parts against n models, from shapes only."""
  method, options, make_prepared = RECIPES[name]
  config = prompt_jax.model_config(variant, method, checkpoint='random',
                                   image_size=args.image_size, **options)
  arch = vit.decode_variant(variant)
  prepared = make_prepared(arch['depth'], arch['width'], config) if make_prepared else None
  model = base.get(method).build(config, args.classes, prepared)
  images = jax.numpy.zeros((1, args.image_size, args.image_size, 3))
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), images))['params']
  tuned, frozen = tree.split(shapes, *base.get(method).trainable_patterns(config))
  consts = sum(int(np.prod(v.shape)) for k, v in tree.flat(frozen).items()
               if k.startswith('prompt/'))  # exported with the tuned part (SHIP's bank)
  backbone_mb = (tree.count(frozen) - consts) * 4 / 2**20
  tuned_mb = (tree.count(tuned) + consts) * 4 / 2**20
  shared, apart = backbone_mb + n * tuned_mb, n * (backbone_mb + tuned_mb)
  return {'recipe': name, 'variant': variant, 'tasks': n,
          'params_mb': {'backbone': backbone_mb, 'per_task': tuned_mb, 'shared': shared,
                        'separate_models': apart},
          'memory_separate_over_shared': apart / shared}


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument('--variants', default='B/16,S/16')
  ap.add_argument('--methods', default=','.join(RECIPES))
  ap.add_argument('--tasks', default='1,4,19')
  ap.add_argument('--batch', type=int, default=64)
  ap.add_argument('--classes', type=int, default=100)
  ap.add_argument('--image_size', type=int, default=224)
  ap.add_argument('--iters', type=int, default=3)
  ap.add_argument('--memory_only', action='store_true', help='parameter memory from shapes only')
  args = ap.parse_args()
  start = time.time()
  row = params_memory if args.memory_only else measure
  rows = [row(m, v, int(n), args) for v in args.variants.split(',')
          for m in args.methods.split(',') for n in args.tasks.split(',')]
  print(json.dumps({'rows': rows, 'seconds': time.time() - start, 'machine': bench.machine()},
                   indent=1))


if __name__ == '__main__':
  main()
