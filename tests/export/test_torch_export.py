"""Tuned prompts to PyTorch and back: the safetensors state dict, in the release's names, loaded
into the independent PyTorch models (references/) gives our logits; imported back it
gives our params."""

import importlib
import json

import jax
import numpy as np
import pytest
from safetensors.numpy import save_file

from helpers import HAS_TORCH
from helpers import needs_torch
from prompt_jax.export import tuned as export
from prompt_jax.export import torch_state as torch_export
from prompt_jax.util import tree
from prompt_jax.data import registry
from prompt_jax.data.source import ArraySource
from prompt_jax.models import vit

if HAS_TORCH:  # the PyTorch comparison skips without torch; the import checks run either way
  import torch

  from references import torch_davpt, torch_petl, torch_ship, torch_vit

IMAGE, CLASSES = 32, 5
PETL = ('lora', 'adapter', 'prefix', 'bitfit')
CONFIGS = {'vpt': 'vpt_vtab', 'spt': 'spt_vtab', 'ship': 'ship_vtab', 'davpt': 'davpt_vtab',
           **{m: f'{m}_vtab' for m in PETL}}
_HEAD = {'head.weight', 'head.bias'}
_BLOCKS = range(4)  # Mu/8
# the release's names (what torch_export writes) for each method
RELEASE_KEYS = {
    'vpt': {'enc.transformer.prompt_embeddings', 'enc.transformer.deep_prompt_embeddings',
            'head.last_layer.weight', 'head.last_layer.bias'},
    'spt': {'prompt_token', 'head.weight', 'head.bias'},
    'ship': {'compound_prompts_visual.0', 'semantic_share_prompt', 'attribute_prompt',
             'feature_bank', 'head.weight', 'head.bias'},
    # NOAH's supernet (the SHIP release's fork) and timm's ViT
    'lora': {f'blocks.{i}.attn.LoRA_{x}.weight' for i in _BLOCKS for x in 'ab'} | _HEAD,
    'adapter': {f'blocks.{i}.adapter.ln{x}.{w}' for i in _BLOCKS for x in '12'
                for w in ('weight', 'bias')} | _HEAD,
    'prefix': {f'blocks.{i}.attn.prefix_tokens_{x}' for i in _BLOCKS for x in ('key', 'value')}
    | _HEAD,
    'bitfit': {f'blocks.{i}.{n}.bias' for i in _BLOCKS
               for n in ('attn.qkv', 'attn.proj', 'norm1', 'norm2', 'mlp.fc1', 'mlp.fc2')}
    | {'patch_embed.proj.bias', 'norm.bias'} | _HEAD,
}
# release name -> references/torch_petl.PETLViT's (a block-level transcription)
_PETL_REF = (('.attn.LoRA', '.LoRA'), ('.attn.prefix', '.prefix'), ('.attn.qkv.', '.qkv.'),
             ('.attn.proj.', '.proj.'), ('.mlp.fc', '.fc'), ('patch_embed.proj.', 'patch_embed.'))


def _build(method, tmp_path, monkeypatch, **overrides):
  """A Mu/8 run of the method's VTAB config (random backbone, ArraySource data), with its trained
  tensors perturbed (so a dropped or misnamed one changes the logits), exported as tuned/."""
  from prompt_jax.train import trainer as train
  cfg = importlib.import_module(f'prompt_jax.configs.{CONFIGS[method]}').get_config()
  cfg.unlock()
  cfg.model.variant, cfg.data.image_size, cfg.init.checkpoint = 'Mu/8', IMAGE, 'random'
  cfg.model.drop_path = 0.0
  if 'vpt' in cfg:
    cfg.vpt.num_prompts, cfg.vpt.dropout = 4, 0.0
  if method == 'ship':
    cfg.ship.num_prompts = 4
  if method == 'davpt':
    cfg.davpt.proxy_start = cfg.davpt.proxy_end = 3
    cfg.davpt.num_other = 4  # cifar100's release recipe has none: keep the other prompts exported
  for k, v in overrides.items():
    cfg[k.split('.')[0]][k.split('.')[1]] = v
  rng = np.random.default_rng(0)
  x = rng.normal(size=(4 * CLASSES, IMAGE, IMAGE, 3)).astype(np.float32)
  y = (np.arange(len(x)) % CLASSES).astype(np.int32)
  src = ArraySource({s: (x, y) for s in ('train800val200', 'train800', 'val200', 'test')},
                    num_classes=CLASSES)
  monkeypatch.setattr(registry, 'get_source', lambda c: src)
  setup = train.build(cfg, str(tmp_path / 'run'))
  backbone = jax.tree_util.tree_map(np.asarray, setup.params)
  trainable, frozen = tree.split(setup.params, *setup.method.trainable_patterns(cfg))
  noise = np.random.default_rng(1)
  trainable = jax.tree_util.tree_map(
      lambda a: np.asarray(a) + noise.normal(0, 0.05, np.shape(a)).astype(np.float32), trainable)
  tuned = export.export_tuned(str(tmp_path / 'tuned'), trainable, frozen, cfg, setup.prepared,
                              backbone_digest=setup.backbone_digest)
  params = tree.merge(trainable, frozen)
  return setup, cfg, backbone, params, tuned, x[:6]


def _reference(method, cfg, setup, sd, meta):
  """The PyTorch reference model of `method`, with the release-named state dict mapped in."""
  arch = vit.decode_variant(cfg.model.variant)
  kw = dict(image=IMAGE, patch=arch['patch_size'], d=arch['width'], depth=arch['depth'],
            heads=arch['num_heads'], mlp=arch['mlp_dim'], classes=CLASSES)
  sd = {k: torch.as_tensor(v) for k, v in sd.items()}
  if method in ('vpt', 'spt'):
    model = torch_vit.VPTDeepViT(prompts=cfg.vpt.num_prompts, pool=cfg.model.pool, **kw)
    if method == 'vpt':
      own = {'prompts': torch.cat([sd['enc.transformer.prompt_embeddings'],
                                   sd['enc.transformer.deep_prompt_embeddings']]),
             'head.weight': sd['head.last_layer.weight'], 'head.bias': sd['head.last_layer.bias']}
    else:
      own = {'prompts': sd['prompt_token'], 'head.weight': sd['head.weight'],
             'head.bias': sd['head.bias']}
  elif method == 'ship':
    anchors = json.loads(meta['prompt_indices'])
    model = torch_ship.SHIPViT(anchors, sd['feature_bank'].numpy(), prompts=cfg.ship.num_prompts,
                               prompt_weight=cfg.ship.prompt_weight,
                               bank_weight=cfg.ship.bank_weight, **kw)
    own = {'independent': torch.cat([sd[f'compound_prompts_visual.{a}']
                                     for a in range(len(anchors))]),
           'shared': sd['semantic_share_prompt'], 'attribute': sd['attribute_prompt'],
           'bank': sd['feature_bank'], 'head.weight': sd['head.weight'],
           'head.bias': sd['head.bias']}
  elif method in PETL:
    dims = {m: (cfg[m].dim,) * len(_BLOCKS) for m in ('lora', 'adapter', 'prefix')
            if m == method}
    model = torch_petl.PETLViT(**kw, **dims)
    own = {}
    for k, v in sd.items():
      for a, b in _PETL_REF:
        k = k.replace(a, b)
      own[k] = v
  else:
    c = cfg.davpt
    model = torch_davpt.DAVPTViT(
        setup.prepared['class_map'], num_proxies=int(setup.prepared['num_proxies']),
        num_other=c.num_other, proxy_start=c.proxy_start, proxy_end=c.proxy_end,
        pool=cfg.model.pool, **kw)
    ref_names = {'attn.q.bias': 'q_bias', 'attn.k.bias': 'k_bias', 'attn.v.bias': 'v_bias',
                 'attn.proj.bias': 'proj.bias', 'mlp.fc2.bias': 'fc2.bias',
                 'mlp.fc1.bias': 'fc1.bias'}
    own = {'proxy': sd.pop('proxy_prompt_tokens'), 'other': sd.pop('other_prompt_tokens'),
           'patch_embed.bias': sd.pop('patch_embed.proj.bias')}
    for k, v in sd.items():
      for a, b in ref_names.items():
        k = k.replace(a, b)
      own[k] = v
  return model, own


@needs_torch
@pytest.mark.slow
@pytest.mark.parametrize('method', ['vpt', 'spt', 'ship', 'davpt', *PETL])
def test_state_dict_in_the_releases_names_gives_our_logits_in_pytorch(method, tmp_path,
                                                                     monkeypatch):
  setup, cfg, backbone, params, tuned, x = _build(method, tmp_path, monkeypatch)
  path = torch_export.to_safetensors(tuned)
  sd, meta = torch_export.read_safetensors(path)
  assert meta['method'] == method and meta['num_classes'] == str(CLASSES)
  if method in RELEASE_KEYS:
    assert set(sd) == RELEASE_KEYS[method] | (
        {f'compound_prompts_visual.{a}' for a in range(len(setup.prepared['anchors']))}
        if method == 'ship' else set())
  else:  # DA-VPT: prompts, head and every trained bias, in timm names (split q/k/v)
    assert method == 'davpt'
    assert {'proxy_prompt_tokens', 'patch_embed.proj.bias', 'blocks.3.attn.v.bias',
            'blocks.0.mlp.fc2.bias', 'blocks.2.norm2.bias', 'head.weight'} <= set(sd)
  model, own = _reference(method, cfg, setup, sd, meta)
  ref = torch_vit.state_dict_from_jax(model, backbone)  # the untuned backbone
  ref.update({k: v for k, v in model.state_dict().items() if k not in ref})  # buffers
  ref.update(own)
  model.load_state_dict(ref, strict=True)
  model.eval()
  with torch.no_grad():
    out = model(torch.as_tensor(x).permute(0, 3, 1, 2).contiguous())
  logits_t = (out[0] if isinstance(out, tuple) else out).numpy()
  logits, _ = setup.model.apply({'params': params}, x)
  np.testing.assert_allclose(logits_t, np.asarray(logits), atol=2e-4, rtol=2e-4)

  # back: the release-named tensors map onto exactly our tuned tensors
  want = {k: np.asarray(v) for k, v in tree.flat(params).items()
          if k in json.load(open(f'{tuned}/meta.json'))['keys']}
  got = torch_export.from_state_dict(sd, cfg, {k: v.shape for k, v in want.items()})
  assert sorted(got) == sorted(want)
  for k, v in got.items():
    np.testing.assert_array_equal(v, want[k], err_msg=k)


def test_import_names_the_problem(tmp_path, monkeypatch):
  setup, cfg, _, params, tuned, x = _build('vpt', tmp_path, monkeypatch)
  path = torch_export.to_safetensors(tuned, str(tmp_path / 'p.safetensors'))
  # no `like`: the config in the metadata rebuilds VPT (no preparation) on the backbone
  model, got, _ = torch_export.load_safetensors('random', path)
  np.testing.assert_allclose(np.asarray(model.apply({'params': got}, x)[0]),
                             np.asarray(setup.model.apply({'params': params}, x)[0]), atol=1e-5)
  sd, meta = torch_export.read_safetensors(path)
  # a release's whole-model checkpoint: its other keys are ignored only when asked
  whole = dict(sd, **{'enc.transformer.encoder.layer.0.ffn.fc1.weight': np.zeros((2, 2), 'f4')})
  save_file(whole, str(tmp_path / 'whole.safetensors'), metadata=meta)
  _, got, _ = torch_export.load_safetensors('random', str(tmp_path / 'whole.safetensors'),
                                            like=tuned, ignore_other=True)
  np.testing.assert_array_equal(got['prompt']['prompts'], params['prompt']['prompts'])
  shapes = {k: np.shape(v) for k, v in tree.flat(params).items()
            if k.startswith(('prompt/', 'head/'))}
  with pytest.raises(KeyError, match='ignore_other'):
    torch_export.from_state_dict(whole, cfg, shapes)
  with pytest.raises(ValueError, match='prompt_embeddings'):
    torch_export.from_state_dict(
        dict(sd, **{'enc.transformer.prompt_embeddings': np.zeros((1, 3, 64), 'f4')}), cfg, shapes)
  with pytest.raises(ValueError, match='head/kernel'):
    torch_export.from_state_dict(
        dict(sd, **{'head.last_layer.weight': np.zeros((3, 64), 'f4')}), cfg, shapes)
  with pytest.raises(ValueError, match='prompt/prompts'):  # a shallow file for a deep model
    torch_export.from_state_dict({k: v for k, v in sd.items() if 'deep' not in k}, cfg, shapes)
  with pytest.raises(KeyError, match=r"missing \['head/bias', 'head/kernel'\]"):
    torch_export.from_state_dict({k: v for k, v in sd.items() if 'head' not in k}, cfg, shapes)
  with pytest.raises(ValueError, match='no PyTorch release naming'):
    torch_export.to_state_dict({'head/kernel': np.zeros((2, 2))},
                               type('C', (), {'method': 'full'})())


@pytest.mark.parametrize('method,field,value,match', [
    ('lora', 'layout', 'separate', "lora.layout='separate' has no name in the release"),
    ('adapter', 'positions', ('attn', 'mlp'), 'the attention adapter has no release name')])
def test_options_without_a_release_name_are_named(method, field, value, match):
  cfg = importlib.import_module(f'prompt_jax.configs.{CONFIGS[method]}').get_config()
  cfg.unlock()
  cfg[method][field] = value
  head = {'head/kernel': np.zeros((4, 2), 'f4'), 'head/bias': np.zeros(2, 'f4')}
  with pytest.raises(ValueError, match=match):
    torch_export.to_state_dict(head, cfg)
