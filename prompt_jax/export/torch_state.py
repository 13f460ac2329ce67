"""Tuned prompts + head to PyTorch and back: safetensors state dicts in each release's names.

  path = to_safetensors('/tmp/run/tuned')            # -> /tmp/run/tuned/state_dict.safetensors
  model, params, config = load_safetensors('ViT-B_16.npz', path, like='/tmp/run/tuned')
  prompt-jax-torch-export --tuned=/tmp/run/tuned [--out=prompts.safetensors]

Names, declared by each method (`ModelParts.torch_naming` in prompt_jax/methods/M.py; PyTorch
layout: Linear weights [out, in]; prompts as the release stores them):
  vpt    KMnP/vpt src/models/vit_prompt/vit.py + vit_models.py: enc.transformer.prompt_embeddings
         [1, P, D], enc.transformer.deep_prompt_embeddings [depth-1, P, D] (deep),
         enc.transformer.prompt_proj.{weight,bias} (project_dim > 0), head.last_layer.{weight,bias}.
  spt    WangYZ1608/Self-Prompt-Tuning Models/MAE_vpt(_deep).py: prompt_token [depth or 1, P, D],
         head.{weight,bias}.
  ship   haoweiz23/SHIP model/vision_transformer.py: compound_prompts_visual.{a} [1, P, D] per
         anchor a, semantic_share_prompt [10, D], attribute_prompt [2, 10, D], head.{weight,bias};
         feature_bank [200, D] (the prototype bank, a plain attribute `model.feature_bank` in the
         release, set in train.py) and the anchors (the release's `visual_prompt_indices`) in the
         file's metadata 'prompt_indices'.
  davpt  Noahsark/DA-VPT models/vpt.py: proxy_prompt_tokens [n_proxy, P, D], other_prompt_tokens
         [depth - n_proxy, nP, D], vpt_norm.{weight,bias} (prompt_norm='layer'), head.{weight,bias},
         and the trained backbone biases in timm names with the release's split q/k/v Linears
         (models/attn.py): patch_embed.proj.bias, cls_token, blocks.{i}.attn.{q,k,v}.bias,
         blocks.{i}.attn.proj.bias, blocks.{i}.norm{1,2}.{weight,bias}, blocks.{i}.mlp.fc2.bias.
  linear head.{weight,bias}.
  lora, adapter, prefix   ZhangYuanhan-AI/NOAH model/supernet_vision_transformer_timm.py (the
         supernet the SHIP release forks): blocks.{i}.attn.LoRA_a.weight [r, D],
         blocks.{i}.attn.LoRA_b.weight [3D, r] (fused layout only); blocks.{i}.adapter.ln1 (down,
         [r, D]) / ln2 (up, [D, r]) .{weight,bias} (the MLP adapter only);
         blocks.{i}.attn.prefix_tokens_{key,value} [1, P, D]; head.{weight,bias}. Only blocks with
         a dim > 0, each at its own dim (NOAH's supernet holds every block at its super dim R and
         uses the first r: pad with zeros to R to load there).
  bitfit timm VisionTransformer: patch_embed.proj.bias, blocks.{i}.attn.qkv.bias [3D] (q, k, v),
         blocks.{i}.attn.proj.bias, blocks.{i}.norm{1,2}.bias, blocks.{i}.mlp.fc{1,2}.bias,
         norm.bias, head.{weight,bias}.
The file's metadata holds the method, its variant and the run's config (json), so `load_safetensors`
can rebuild the model from the file and a backbone. A tensor this module does not name is an error
(never dropped), as is a state dict key it does not know on import (`ignore_other=True` takes only
the named tensors from a release's whole-model checkpoint).
"""

from __future__ import annotations

from collections.abc import Mapping
import json
import os
from typing import Any

import ml_collections
import numpy as np

from prompt_jax.methods import base
from prompt_jax.train.errors import PromptFileError
from prompt_jax.util import tree
from prompt_jax.util import treeio
from prompt_jax.export import tuned as export
from prompt_jax.util import config_files
from prompt_jax.checkpoints import backbone as backbone_lib

Arrays = dict[str, np.ndarray]

def _naming(method: str):
  """The method's `torch_naming` (its module under prompt_jax/methods/ declares it)."""
  naming = base.get(method).model.torch_naming
  if naming is None:
    known = sorted(m for m in base.METHODS.names() if base.get(m).model.torch_naming is not None)
    raise ValueError(f'no PyTorch release naming for method {method!r}; known: {known} '
                     '(a method declares one with ModelParts.torch_naming)')
  return naming.to_torch, naming.from_torch, naming.release


def to_state_dict(tuned: Mapping[str, Any], config: Any) -> Arrays:
  """Flat tuned tensors ('prompt/prompts', 'head/kernel', ...) -> {release name: float32 array}.
  A tensor the method's naming does not cover is an error."""
  t = {k: np.asarray(v, np.float32) for k, v in tuned.items()}
  sd = _naming(config.method)[0](t, config)
  if t:
    raise ValueError(f'{sorted(t)} have no name in the {config.method} release\'s state dict; '
                     'this export would drop them')
  return {k: np.ascontiguousarray(v) for k, v in sd.items()}


def from_state_dict(sd: Mapping[str, Any], config: Any, shapes: Mapping[str, tuple[int, ...]], *,
                    ignore_other: bool = False) -> Arrays:
  """{release name: array} -> flat tuned tensors, checked against `shapes` (flat key -> shape of
  the model's tuned tensors). Unknown names are an error unless `ignore_other` (a release's
  whole-model checkpoint: its backbone keys are then ignored); missing or mis-shaped ones always."""
  rest = {k: np.asarray(v, np.float32) for k, v in sd.items()}
  try:
    flat = _naming(config.method)[1](rest, config)
  except KeyError as e:  # a release name the method's naming reads
    raise KeyError(f'the state dict has no {e.args[0]!r}, which the {config.method} model needs '
                   '(a missing key)') from None
  if rest and not ignore_other:
    raise KeyError(f'{len(rest)} state dict keys are not {config.method} prompt/head tensors: '
                   f'{sorted(rest)[:8]}; pass ignore_other=True (--ignore_other) to take only the '
                   'named tensors (e.g. from a release\'s whole-model checkpoint)')
  if ignore_other:  # e.g. a whole-model checkpoint's untrained norms: the backbone's are used
    flat = {k: v for k, v in flat.items() if k in shapes}
  missing = sorted(set(shapes) - set(flat))
  extra = sorted(set(flat) - set(shapes))
  if missing or extra:
    raise KeyError(f'the state dict does not fit this {config.method} model: missing {missing}, '
                   f'not in the model {extra}')
  out = {}
  for k, want in shapes.items():
    v = flat[k]
    if v.size != int(np.prod(want)) or (v.ndim == len(want) and v.shape != tuple(want)):
      raise ValueError(f'{k}: the state dict has shape {v.shape}, the model {tuple(want)}')
    out[k] = v.reshape(want)
  return out


# ------------------------------------------------------------------ files


def _tuned(tuned_dir: str) -> tuple[Arrays, ml_collections.ConfigDict, dict[str, Any], Any]:
  import orbax.checkpoint as ocp
  tuned_dir = os.path.abspath(tuned_dir)
  export.verify(tuned_dir)  # the seal: an edited, damaged or truncated file is refused
  with open(os.path.join(tuned_dir, 'config.json')) as f:
    config = ml_collections.ConfigDict(json.load(f))
  with open(os.path.join(tuned_dir, 'meta.json')) as f:
    meta = json.load(f)
  params = ocp.StandardCheckpointer().restore(os.path.join(tuned_dir, 'params'))
  prepared = treeio.load(os.path.join(tuned_dir, 'prepared.npz'))
  return {k: np.asarray(v) for k, v in tree.flat(params).items()}, config, meta, prepared


def to_safetensors(tuned_dir: str, out: str | None = None) -> str:
  """Writes the export `tuned_dir` as a safetensors state dict in its method's release names
  (default `tuned_dir/state_dict.safetensors`); returns the path. Metadata: method, variant,
  release, num_classes, config (json), backbone_digest, prompt_indices (SHIP's anchors)."""
  from safetensors.numpy import save_file
  flat, config, meta, prepared = _tuned(tuned_dir)
  sd = to_state_dict(flat, config)
  info = {'format': 'prompt_jax.export.torch_state/1', 'method': config.method,
          'variant': base.get(config.method).label(config), 'release': _naming(config.method)[2],
          'num_classes': str(meta['num_classes']), 'config': config.to_json(),
          'backbone_digest': str(meta.get('backbone_digest')),
          'backbone_checkpoint': str(meta.get('backbone_checkpoint'))}
  value = prepared.get('value', prepared) if isinstance(prepared, Mapping) else None
  if isinstance(value, Mapping) and 'anchors' in value:
    info['prompt_indices'] = json.dumps([int(a) for a in np.asarray(value['anchors'])])
  out = os.path.abspath(out or os.path.join(tuned_dir, 'state_dict.safetensors'))
  save_file(sd, out, metadata=info)
  return out




def read_safetensors(path: str) -> tuple[Arrays, dict[str, str]]:
  """(state dict, metadata) of a safetensors file. Raises PromptFileError when `path` is not one or
  a floating tensor holds NaN / inf (naming the tensor)."""
  from safetensors import safe_open
  try:
    with safe_open(path, framework='numpy') as f:
      sd, meta = {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
  except Exception as e:  # whatever safetensors raises on a file that is not one
    raise PromptFileError(f'{path} is not a readable .safetensors file ({type(e).__name__}: '
                          f'{str(e)[:120]}); pass a file written by prompt-jax-torch-export or '
                          'safetensors.save_file') from None
  for k in sorted(sd):
    if sd[k].dtype.kind == 'f' and not np.isfinite(sd[k]).all():
      raise PromptFileError(f'{path}: tensor {k} holds NaN or inf values; these prompts are '
                            'damaged or diverged, use another file')
  return sd, meta


def load_safetensors(backbone_ckpt: str, path: str, *, like: Any = None,
                     backbone_format: str | None = None, allow_other_backbone: bool = False,
                     ignore_other: bool = False
                     ) -> tuple[Any, dict[str, Any], ml_collections.ConfigDict]:
  """A model whose prompts and head come from the state dict `path` (release names, e.g. prompts a
  user trained with a release, or `to_safetensors`' output), for evaluation.

  like: what defines the model: a `tuned/` export (its config and preparation, e.g. SHIP's anchors;
  the backbone digest check of `export.load_tuned` applies), a config / config file spec for
  methods without a preparation (vpt, spt via its config, linear), or None: the config in the
  file's metadata (files written by `to_safetensors`). Returns (model, params, config).
  """
  sd, meta = read_safetensors(path)
  if isinstance(like, (str, os.PathLike)) and os.path.isdir(like):
    model, params, config = export.load_tuned(backbone_ckpt, os.fspath(like),
                                              backbone_format=backbone_format,
                                              allow_other_backbone=allow_other_backbone)
    with open(os.path.join(os.fspath(like), 'meta.json')) as f:
      keys = json.load(f)['keys']
  else:
    config = _config_of(like, meta)
    model, params, keys = _fresh(config, backbone_ckpt, backbone_format, sd, meta,
                                 allow_other_backbone=allow_other_backbone, path=path)
  flat = tree.flat(params)
  new = from_state_dict(sd, config, {k: np.shape(flat[k]) for k in keys},
                        ignore_other=ignore_other)
  flat.update(new)
  return model, tree.nest(flat), config


def _config_of(like: Any, meta: Mapping[str, str]) -> ml_collections.ConfigDict:
  if like is None:
    if 'config' not in meta:
      raise ValueError('the file has no config in its metadata (not written by to_safetensors): '
                       'pass like= a tuned/ export, a config or a config file spec')
    return ml_collections.ConfigDict(json.loads(meta['config']))
  if isinstance(like, str):
    return config_files.load(like)
  return ml_collections.ConfigDict(like.to_dict() if hasattr(like, 'to_dict') else like)


def _fresh(config, backbone_ckpt, backbone_format, sd, meta, *, allow_other_backbone, path):
  """The model of `config` on `backbone_ckpt` (methods without a preparation); its tuned keys.
  The backbone's digest must be the one in the file's metadata (`export.check_backbone`)."""
  m = base.get(config.method)
  if m.recipe.prepare is not None:
    raise ValueError(f'method {config.method!r} derives its model from the training data (SHIP\'s '
                     'anchors and bank, DA-VPT\'s clusters): pass like= a tuned/ export of a run '
                     'with the same config')
  head = sd.get('head.last_layer.weight', sd.get('head.weight'))
  num_classes = int(meta['num_classes']) if 'num_classes' in meta else (
      int(head.shape[0]) if head is not None else 0)
  config.unlock()
  config.init.checkpoint = backbone_ckpt
  if backbone_format:
    config.init.format = backbone_format
  config.lock()
  arch = m.arch(config)
  backbone = backbone_lib.load(m, config, arch)
  want = meta.get('backbone_digest')
  export.check_backbone(tree.digest(backbone), None if want in (None, '', 'None') else want, path,
                        backbone_ckpt, meta.get('backbone_checkpoint'),
                        allow_other_backbone=allow_other_backbone)
  model = m.build(config, num_classes, None, arch)
  params = m.model.init_params(backbone_lib.init_with(model, config, backbone), None, config)
  trainable, frozen = tree.split(params, *m.trainable_patterns(config))
  keys = list(tree.flat(trainable)) + [k for k in tree.flat(frozen) if k.startswith('prompt/')]
  return model, params, keys


def main(argv: list[str] | None = None) -> None:
  """prompt-jax-torch-export --tuned=DIR [--out=FILE]: the PyTorch state dict. An export that is
  not sealed and unchanged (`export.verify`) is one line on stderr, exit 2, nothing written."""
  import argparse
  import sys
  p = argparse.ArgumentParser(prog='prompt-jax-torch-export', description=main.__doc__)
  p.add_argument('--tuned', required=True, help='a run\'s tuned/ export')
  p.add_argument('--out', default=None, help='default: TUNED/state_dict.safetensors')
  a = p.parse_args(argv)
  try:
    path = to_safetensors(a.tuned, a.out)
    sd, meta = read_safetensors(path)
  except (ValueError, KeyError, OSError) as e:  # ExportError, a method without release names
    msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    print(f'prompt-jax-torch-export: {" ".join(msg.split())}', file=sys.stderr)
    sys.exit(2)
  print(f'{path}: {meta["method"]} ({meta["release"]} names), '
        + ', '.join(f'{k} {list(v.shape)}' for k, v in sd.items()))


if __name__ == '__main__':
  main()
