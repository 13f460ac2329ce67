"""BitFit (Ben Zaken et al. 2022): every bias of the frozen backbone trains, plus the head.

Biases are the params named `bias`: the patch embedding's, every q/k/v/out projection's, both MLP
layers', every LayerNorm's and the final norm's (at ViT-B/16 102,912 = the 0.10M the VTAB tables
print for BitFit; without the LayerNorm biases it would be 83,712). No prompter: the model is the
plain ViT; the masked optimizer trains the matching paths (biases and 1-D params take no weight
decay, as everywhere in the trainer). `config.train.trainable` replaces the patterns.
"""

from __future__ import annotations

from prompt_jax.methods import base

TRAINABLE = (r'(^|/)bias$', r'^head/')

BITFIT = base.register(base.Method(name='bitfit', trainable=TRAINABLE))
