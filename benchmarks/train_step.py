"""Train-step throughput: prompt_jax VPT-deep vs the same model in PyTorch, in one run.

  python -m benchmarks.train_step [--variant=B/16 --batch=8 --prompts=50 --iters=5]

Prints JSON: images/s of both, the ratio, FLOPs of our compiled step (XLA cost analysis) and its
utilisation of a measured matmul peak. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from benchmarks import common as bench
from prompt_jax.configs import vpt_vtab
from prompt_jax import train
from prompt_jax import tree
from prompt_jax.data.source import ArraySource


def jax_step(variant: str, batch: int, prompts: int, image: int, classes: int = 100):
  cfg = vpt_vtab.get_config()
  cfg.unlock()
  cfg.model.variant = variant
  cfg.vpt.num_prompts = prompts
  cfg.vpt.dropout = 0.0
  cfg.data.image_size = image
  cfg.train.batch_size = batch
  cfg.init.checkpoint = 'random'  # timing only: a random backbone on purpose
  rng = np.random.default_rng(0)
  x = rng.normal(size=(batch, image, image, 3)).astype(np.float32)
  y = rng.integers(0, classes, batch).astype(np.int32)
  src = ArraySource({'train800val200': (x, y), 'test': (x, y)}, num_classes=classes)
  from prompt_jax.data import registry
  orig = registry.get_source
  registry.get_source = lambda c: src
  try:
    setup = train.build(cfg, '/tmp/bench_unused')
  finally:
    registry.get_source = orig
  run, compiled, compile_s, trainable, _ = bench.compile_trainer_step(setup, x, y)
  return run, bench.compiled_flops(compiled), compile_s, tree.count(trainable)


def torch_step(batch: int, prompts: int, image: int, classes: int = 100, **arch):
  import torch
  from tests.torch_reference.torch_vit import VPTDeepViT
  torch.manual_seed(0)
  model = VPTDeepViT(image=image, prompts=prompts, classes=classes, **arch)
  opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
  x = torch.randn(batch, 3, image, image)
  y = torch.randint(0, classes, (batch,))

  def run():
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()

  return run, torch.get_num_threads(), torch.__version__


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument('--variant', default='B/16')
  ap.add_argument('--batch', type=int, default=8)
  ap.add_argument('--prompts', type=int, default=50)
  ap.add_argument('--image', type=int, default=224)
  ap.add_argument('--iters', type=int, default=5)
  args = ap.parse_args()
  from prompt_jax.models import vit
  arch = vit.decode_variant(args.variant)
  run_j, flops, compile_s, n_train = jax_step(args.variant, args.batch, args.prompts, args.image)
  t_jax = bench.time_fn(run_j, iters=args.iters)
  run_t, threads, torch_version = torch_step(
      args.batch, args.prompts, args.image, patch=arch['patch_size'], d=arch['width'],
      depth=arch['depth'], heads=arch['num_heads'], mlp=arch['mlp_dim'])
  t_torch = bench.time_fn(run_t, iters=args.iters)
  peak = bench.matmul_peak_flops()
  print(json.dumps({
      'benchmark': 'train_step', 'model': f'ViT-{args.variant} VPT-deep P={args.prompts}',
      'batch': args.batch, 'image': args.image, 'dtype': 'float32', 'trainable_params': n_train,
      'jax_images_per_s': args.batch / t_jax, 'torch_images_per_s': args.batch / t_torch,
      'jax_over_torch': t_torch / t_jax, 'jax_step_flops': flops,
      'jax_achieved_flops_per_s': flops / t_jax, 'matmul_peak_flops_per_s': peak,
      'jax_flop_utilisation': flops / t_jax / peak, 'jax_compile_s': compile_s,
      'torch_threads': threads, 'torch': torch_version, 'machine': bench.machine()}, indent=1))


if __name__ == '__main__':
  main()
