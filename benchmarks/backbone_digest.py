"""What the start-up identity checks cost next to loading the backbone: reading a ViT .npz of the
original layout (`checkpoints.vit.load`, validated), the content digest the trainer records
(`tree.digest`: sha256 over the loaded float32 arrays), the non-finite check of the loaded weights,
and, for comparison, a streamed sha256 of the file (`workdir.file_digest`). Random weights of the
variant's exact shapes (timing only).

  python -m benchmarks.backbone_digest [--variant=B/16 --iters=3]

Prints JSON with the 1-minute load average of the machine; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

import jax
import numpy as np

from benchmarks import common as bench
from prompt_jax.checkpoints import backbone
from prompt_jax.models import arch
from prompt_jax.util import tree
from prompt_jax.train import workdir
from prompt_jax.checkpoints import vit as vit_ckpt
from prompt_jax.configs import common


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--variant', default='B/16')
  ap.add_argument('--iters', type=int, default=3)
  args = ap.parse_args()
  cfg = common.base()
  cfg.model.variant = args.variant
  model = backbone.build_vit(cfg, arch.decode(args.variant), 0, None)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                             backbone.dummy_images(cfg)))['params']
  expected = {k: v.shape for k, v in tree.flat(shapes).items()}
  rng = np.random.default_rng(0)
  flat = {k: rng.standard_normal(s, dtype=np.float32) for k, s in expected.items()}
  heads = expected['Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel'][1]
  with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, 'backbone.npz')
    np.savez(path, **flat)
    loaded = vit_ckpt.load(path, 'npz', expected, num_heads=heads)
    median = lambda fn: bench.time_fn(fn, warmup=0, iters=args.iters)
    out = {
        'variant': args.variant, 'params': tree.count(flat),
        'file_mb': os.path.getsize(path) / 2**20,
        'load_npz_s': median(lambda: vit_ckpt.load(path, 'npz', expected, num_heads=heads)),
        'digest_loaded_s': median(lambda: tree.digest(loaded)),
        'finite_check_s': median(lambda: [np.isfinite(v).all() for v in loaded.values()]),
        'file_sha256_s': median(lambda: workdir.file_digest(path)),
        'loadavg_1min': os.getloadavg()[0], 'machine': bench.machine(),
    }
  print(json.dumps(out, indent=1))


if __name__ == '__main__':
  main()
