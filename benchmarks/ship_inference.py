"""SHIP cost on CPU: inference images/s of SHIP (training-form and fast path) vs plain ViT vs
VPT-deep
with the same number of prompt tokens, train-step images/s SHIP vs VPT-deep, and SHIP train-step
compile time. Random weights (timing only).

  python -m benchmarks.ship_inference [--variant=B/16 --batch=8 --prompts=50 --iters=3]

Prints JSON; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import common as bench
from prompt_jax.methods import ship
from prompt_jax.methods import vpt
from prompt_jax.models import vit


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--variant', default='B/16')
  ap.add_argument('--batch', type=int, default=8)
  ap.add_argument('--prompts', type=int, default=50)
  ap.add_argument('--image', type=int, default=224)
  ap.add_argument('--iters', type=int, default=3)
  a = ap.parse_args()
  arch = vit.decode_variant(a.variant)
  n = (a.image // arch['patch_size']) ** 2 + 1
  anchors = (0, 2, 4, 6, 8, 11) if arch['depth'] == 12 else tuple(range(arch['depth']))
  total_prompts = a.prompts + ship.NUM_ATTRIBUTE + ship.NUM_SHARED  # tokens at the last block
  mk = lambda p: vit.VisionTransformer(**arch, num_classes=100, prompt=p)
  ship_p = lambda fast: ship.SHIPPrompter(
      width=arch['width'], depth=arch['depth'], anchors=anchors, num_prompts=a.prompts,
      num_image_tokens=n, num_prototypes=200, fast_inference=fast)
  models = {'vit': mk(None), 'ship': mk(ship_p(False)), 'ship_fast': mk(ship_p(True)),
            'vpt_deep': mk(vpt.VPTPrompter(num_prompts=total_prompts, width=arch['width'],
                                           depth=arch['depth'], patch_size=arch['patch_size']))}
  img = jnp.asarray(np.random.default_rng(0).normal(size=(a.batch, a.image, a.image, 3)),
                    jnp.float32)
  labels = jnp.zeros((a.batch,), jnp.int32)
  res = {'machine': bench.machine(), 'variant': a.variant, 'batch': a.batch,
         'ship_prompts': a.prompts, 'vpt_prompts': total_prompts, 'anchors': anchors}
  params = {}
  for name, m in models.items():
    params[name] = m.init(jax.random.PRNGKey(0), img[:1])['params']
  params['ship_fast'] = params['ship']
  for name, m in models.items():
    f = jax.jit(lambda p, x, m=m: m.apply({'params': p}, x, train=False)[0])
    secs = bench.time_fn(lambda f=f, p=params[name]: f(p, img).block_until_ready(), warmup=1,
                         iters=a.iters)
    res[f'infer_img_s_{name}'] = a.batch / secs
  for name in ('ship', 'vpt_deep'):
    m = models[name]
    train_p = {k: params[name][k] for k in ('prompt', 'head')}
    frozen = {k: v for k, v in params[name].items() if k not in train_p}
    opt = optax.adamw(1e-3)
    opt_state = opt.init(train_p)

    def step(tp, os_, rng, m=m, frozen=frozen, opt=opt):
      def loss_fn(tp):
        logits, _ = m.apply({'params': {**frozen, **tp}}, img, train=True,
                            rngs={'dropout': rng}, mutable=['aux'])[0]
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
      loss, g = jax.value_and_grad(loss_fn)(tp)
      if 'bank' in g.get('prompt', {}):
        g['prompt']['bank'] = jnp.zeros_like(g['prompt']['bank'])
      upd, os_ = opt.update(g, os_, tp)
      return optax.apply_updates(tp, upd), os_, loss

    t0 = time.perf_counter()
    compiled = jax.jit(step).lower(train_p, opt_state, jax.random.PRNGKey(0)).compile()
    res[f'train_compile_s_{name}'] = time.perf_counter() - t0
    secs = bench.time_fn(
        lambda c=compiled, tp=train_p, os_=opt_state: jax.block_until_ready(
            c(tp, os_, jax.random.PRNGKey(0))),
        warmup=1, iters=a.iters)
    res[f'train_img_s_{name}'] = a.batch / secs
  print(json.dumps(res, indent=1))


if __name__ == '__main__':
  main()
