"""A prompt method defined outside the package: the proof that a method is one file.

Importing this module registers method 'toy' with its config section (`config.toy`), its own
validation rule and its model. Nothing in prompt_jax/ names it. Its config file is
tests/outside/toy_config.py (which imports this module, so the CLI and the sweep find it).

The method: `toy.num_tokens` key/value-only prompts per block, scaled by `toy.scale` (a prefix).
"""

from __future__ import annotations

from typing import Any

import ml_collections

from prompt_jax.train import validation
from prompt_jax.methods import base
from prompt_jax.methods import inits
from prompt_jax.models.prompter import BlockOutput
from prompt_jax.models.prompter import Prompter
from prompt_jax.models.prompter import Tokens


def section(**over: Any) -> ml_collections.ConfigDict:
  """`config.toy`."""
  c = ml_collections.ConfigDict(dict(
      num_tokens=2,    # key/value-only prompts per block
      scale=1.0))      # multiplies the prompts; must be > 0
  c.update(over)
  return c


def check(c: base.Config) -> list[str]:
  out = validation.at_least('toy.num_tokens', c.toy.num_tokens, 1)
  if not c.toy.scale > 0:
    out.append(f'toy.scale={c.toy.scale!r}: the toy method needs a positive scale (0 switches '
               'its prompts off); set --config.toy.scale=1.0')
  return out


class ToyPrompter(Prompter):
  num_tokens: int
  width: int
  depth: int
  scale: float

  def setup(self):
    self.prompts = self.param('prompts', inits.uniform(0.1),
                              (self.depth, self.num_tokens, self.width))

  def insert(self, layer: int, prev: BlockOutput, train: bool,
             pool_reads_prompts: bool = False) -> Tokens:
    del train, pool_reads_prompts
    return Tokens(prev.x, kv=self.scale * self.prompts[layer].astype(prev.x.dtype))


def build_prompter(config: base.Config, arch: base.Arch, prepared: Any) -> ToyPrompter:
  del prepared
  return ToyPrompter(num_tokens=config.toy.num_tokens, width=arch.width, depth=arch.depth,
                     scale=config.toy.scale)


TOY = base.register(base.Method(name='toy', model=base.ModelParts(build_prompter=build_prompter),
                                config_section='toy', section=section, check=check))
