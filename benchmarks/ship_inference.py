"""Inference cost of prompts on CPU: SHIP and VPT-deep vs the plain ViT, live tokens vs all tokens
live; SHIP train-step images/s and compile time. Random weights (timing only).

  python -m benchmarks.ship_inference [--variant=S/16 --batch=8 --prompts=50 --vpt_prompts=50
      --iters=3]

Models (inference images/s `infer_img_s_<name>`, cost relative to the plain ViT
`cost_over_vit_<name>` = ViT images/s ÷ its images/s):
  vit              the plain ViT;
  ship             SHIP with live tokens (the default: the last block's prompts and the shared
                   prompt are key/value-only);
  ship_all_live    every token in every block, the release's last block (`live_tokens=False`,
                   `fast_inference=False`);
  ship_fast        `live_tokens=False` with `ship.fast_inference` (the earlier fast path);
  vpt_deep         VPT-deep with `--vpt_prompts` prompts, live tokens (prompts key/value-only);
  vpt_deep_all_live  the same with every token live.
The inference candidates are timed round-robin (`bench.time_interleaved`). Prints JSON with the
machine's load average; nothing is asserted.
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
  ap.add_argument('--variant', default='S/16')
  ap.add_argument('--batch', type=int, default=8)
  ap.add_argument('--prompts', type=int, default=50, help='SHIP independent prompts')
  ap.add_argument('--vpt_prompts', type=int, default=50)
  ap.add_argument('--image', type=int, default=224)
  ap.add_argument('--iters', type=int, default=3)
  a = ap.parse_args()
  load_before = bench.load_average()
  arch = vit.decode_variant(a.variant)
  n = (a.image // arch['patch_size']) ** 2 + 1
  anchors = (0, 2, 4, 6, 8, 11) if arch['depth'] == 12 else tuple(range(arch['depth']))
  mk = lambda p: vit.VisionTransformer(**arch, num_classes=100, prompt=p)
  ship_p = lambda live, fast: ship.SHIPPrompter(
      width=arch['width'], depth=arch['depth'], anchors=anchors, num_prompts=a.prompts,
      num_image_tokens=n, num_prototypes=200, fast_inference=fast, live_tokens=live)
  vpt_p = lambda live: vpt.VPTPrompter(num_prompts=a.vpt_prompts, width=arch['width'],
                                       depth=arch['depth'], patch_size=arch['patch_size'],
                                       live_tokens=live)
  models = {'vit': mk(None), 'ship': mk(ship_p(True, True)),
            'ship_all_live': mk(ship_p(False, False)), 'ship_fast': mk(ship_p(False, True)),
            'vpt_deep': mk(vpt_p(True)), 'vpt_deep_all_live': mk(vpt_p(False))}
  img = jnp.asarray(np.random.default_rng(0).normal(size=(a.batch, a.image, a.image, 3)),
                    jnp.float32)
  labels = jnp.zeros((a.batch,), jnp.int32)
  res = {'variant': a.variant, 'batch': a.batch, 'ship_prompts': a.prompts,
         'vpt_prompts': a.vpt_prompts, 'anchors': anchors}
  params = {'vit': models['vit'].init(jax.random.PRNGKey(0), img[:1])['params'],
            'ship': models['ship'].init(jax.random.PRNGKey(0), img[:1])['params'],
            'vpt_deep': models['vpt_deep'].init(jax.random.PRNGKey(0), img[:1])['params']}
  for name in ('ship_all_live', 'ship_fast'):
    params[name] = params['ship']
  params['vpt_deep_all_live'] = params['vpt_deep']
  runs = {}
  for name, m in models.items():
    f = jax.jit(lambda p, x, m=m: m.apply({'params': p}, x, train=False)[0])
    runs[name] = lambda f=f, p=params[name]: f(p, img).block_until_ready()
  secs = bench.time_interleaved(runs, iters=a.iters)  # round-robin: load changes hit all alike
  for name in models:
    res[f'infer_img_s_{name}'] = a.batch / secs[name]
    res[f'cost_over_vit_{name}'] = secs[name] / secs['vit']
  for name in ('ship', 'ship_all_live'):
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
  res.update(load_average_before=load_before, machine=bench.machine())
  print(json.dumps(res, indent=1))


if __name__ == '__main__':
  main()
