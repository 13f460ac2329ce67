"""The parameter-efficient baselines (methods/lora.py, adapter.py, prefix.py, bitfit.py).

Parity on identical weights with a PyTorch transcription of the NOAH / SHIP release's blocks
(references/torch_petl.py): logits, loss and the gradients of every trainable tensor to
1e-5; LoRA also against Hugging Face peft on a transformers ViT (independent code). The inits are
checked against torch's own initialisers on the release's shapes; trainable counts at ViT-B/16
against the numbers the VTAB tables print; each baseline trains on the digits backbone.
"""

import importlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

from helpers import micro_config
from prompt_jax.util import tree
from prompt_jax.configs import common
from prompt_jax.methods import base

torch = pytest.importorskip('torch')

D, HEADS, CLASSES = 64, 4, 10  # Mu/8 at 32px


def _config(method, variant='Mu/8', **section):
  cfg = importlib.import_module(f'prompt_jax.configs.{method}_vtab').get_config('dtd')
  cfg.unlock()
  cfg.model.update(variant=variant, drop_path=0.0)
  cfg.data.image_size = 32
  for k, v in section.items():
    cfg[method][k] = v
  cfg.lock()
  return cfg


def _ours(cfg, seed=0):
  """(model, params): a random backbone and random (non-zero) trainable tensors."""
  model = base.get(cfg.method).build(cfg, CLASSES, None)
  params = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, 32, 32, 3)))['params']
  flat = traverse_util.flatten_dict(jax.device_get(params), sep='/')
  rng = np.random.default_rng(seed)
  for k, v in flat.items():  # non-trivial LayerNorms, biases, zero-init LoRA B, head
    if not k.endswith('kernel') or k.startswith(('prompt', 'head')):
      flat[k] = (v + 0.2 * rng.standard_normal(v.shape)).astype(np.float32)
  return model, traverse_util.unflatten_dict(flat, sep='/')


def _ce(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def _jax_step(model, params, images, labels):
  trainable, frozen = tree.split(params, (r'^prompt/', r'^head/'), ())

  def loss_fn(t):
    logits, _ = model.apply({'params': tree.merge(t, frozen)}, images)
    return _ce(logits, labels), logits

  (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
  return np.asarray(logits), float(loss), traverse_util.flatten_dict(grads, sep='/')


def _torch_step(ref, images, labels):
  logits = ref(torch.from_numpy(images.transpose(0, 3, 1, 2).copy()))
  loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels).long())
  loss.backward()
  return logits.detach().numpy(), loss.item(), {n: p.grad.numpy() for n, p in
                                                ref.trainable().items()}


def _their_grad(name):
  """Our gradient path -> (the transcription's name, our array -> its layout)."""
  parts = name.split('/')
  if parts[0] == 'head':
    return f'head.{"weight" if parts[1] == "kernel" else "bias"}', lambda g: g.T
  leaf = '/'.join(parts[2:])
  table = {'lora_a': 'LoRA_a.weight', 'lora_b': 'LoRA_b.weight', 'key': 'prefix_tokens_key',
           'value': 'prefix_tokens_value', 'mlp/down/kernel': 'adapter.ln1.weight',
           'mlp/down/bias': 'adapter.ln1.bias', 'mlp/up/kernel': 'adapter.ln2.weight',
           'mlp/up/bias': 'adapter.ln2.bias'}
  theirs = f'blocks.{int(parts[1].split("_")[1])}.{table[leaf]}'
  if leaf in ('key', 'value'):
    return theirs, lambda g: g[None]
  return theirs, (lambda g: g.T) if leaf.endswith(('kernel', 'lora_a', 'lora_b')) else (
      lambda g: g)


CASES = {  # name -> (method, section overrides, transcription dims); 0 = none in that block
    'lora_per_block': ('lora', {'dims': (4, 0, 8, 2)}, dict(lora=(4, 0, 8, 2))),
    'prefix_per_block': ('prefix', {'dims': (0, 3, 0, 5)}, dict(prefix=(0, 3, 0, 5))),
    'adapter_per_block': ('adapter', {'dims': (2, 8, 0, 1)}, dict(adapter=(2, 8, 0, 1))),
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_matches_the_release_transcription(case):
  from references import torch_petl
  method, section, dims = CASES[case]
  model, params = _ours(_config(method, **section))
  ref = torch_petl.PETLViT(classes=CLASSES, **dims).eval()
  ref.load_jax(params)
  rng = np.random.default_rng(1)
  images = rng.uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32)
  labels = rng.integers(0, CLASSES, 4).astype(np.int32)
  logits, loss, grads = _jax_step(model, params, images, labels)
  t_logits, t_loss, t_grads = _torch_step(ref, images, labels)
  np.testing.assert_allclose(logits, t_logits, atol=1e-5, rtol=1e-5)
  assert loss == pytest.approx(t_loss, abs=1e-5)
  assert len(grads) == len(t_grads), (sorted(grads), sorted(t_grads))
  for name, g in grads.items():
    theirs, layout = _their_grad(name)
    np.testing.assert_allclose(layout(np.asarray(g)), t_grads[theirs], atol=1e-5, rtol=1e-5,
                               err_msg=name)
  assert np.abs(np.asarray(grads['head/kernel'])).max() > 1e-3  # a real gradient flows


def _bound_range(ours, bound):
  ours = np.asarray(ours)
  assert np.abs(ours).max() <= bound * (1 + 1e-6)
  assert np.abs(ours).max() > 0.9 * bound, (np.abs(ours).max(), bound)
  assert np.std(ours) == pytest.approx(bound / math.sqrt(3), rel=0.1)  # uniform, not normal


def test_inits_are_the_releases_at_vit_b16_shapes():
  """The modules our prompters build per block, at the release's shapes (D=768, r=8, P=10),
  against torch's initialisers on the transcription's tensors."""
  from prompt_jax.methods import adapter
  from prompt_jax.methods import lora
  from prompt_jax.methods import prefix
  from references import torch_petl
  blk = torch_petl.PETLBlock(768, 12, 16, lora=8, prefix=10, adapter=8)
  fan = lambda t: torch.nn.init._calculate_fan_in_and_fan_out(t)
  xavier = lambda t: math.sqrt(6 / sum(fan(t)))
  key, y = jax.random.PRNGKey(0), jnp.zeros((1, 768))
  p = lora.LowRank(768, 8, 3 * 768).init(key, y, False)['params']
  assert p['lora_a'].shape == (768, 8) and p['lora_b'].shape == (8, 2304)
  _bound_range(p['lora_a'], 1 / math.sqrt(fan(blk.LoRA_a.weight)[0]))  # kaiming_uniform_(a=√5)
  assert not np.asarray(p['lora_b']).any()
  p = prefix.BlockPrefix(768, 10).init(key)['params']
  assert p['key'].shape == p['value'].shape == (10, 768)
  for k in ('key', 'value'):
    _bound_range(p[k], xavier(blk.prefix_tokens_key))
  p = adapter.Adapter(768, 8).init(key, y, False)['params']
  assert p['down']['kernel'].shape == (768, 8) and p['up']['kernel'].shape == (8, 768)
  _bound_range(p['down']['kernel'], xavier(blk.adapter.ln1.weight))
  _bound_range(p['up']['kernel'], xavier(blk.adapter.ln2.weight))
  for b in (p['down']['bias'], p['up']['bias']):
    assert 0 < np.std(np.asarray(b)) < 3e-6


def test_trainable_counts_at_vit_b16_are_the_papers():
  """LoRA 0.29M, Adapter 0.16M, BitFit 0.10M: the VTAB tables' numbers (NOAH Table 1, ...)."""
  want = {'lora': 294_912, 'adapter': 156_768, 'prefix': 184_320, 'bitfit': 102_912}
  for method, n in want.items():
    cfg = _config(method, variant='B/16')
    model = base.get(method).build(cfg, CLASSES, None)
    shapes = jax.eval_shape(lambda m=model: m.init(jax.random.PRNGKey(0),
                                                   jnp.zeros((1, 224, 224, 3))))['params']
    train_re, frozen_re = base.get(method).trainable_patterns(cfg)
    flat = traverse_util.flatten_dict(shapes, sep='/')
    got = {k for k in flat if tree.is_trainable(k, train_re, frozen_re)}
    assert sum(flat[k].size for k in got if not k.startswith('head/')) == n, method
    if method == 'bitfit':
      assert got == {k for k in flat if k.endswith('/bias')} | {'head/kernel'}


def test_per_block_dims_of_the_wrong_length_name_the_fix():
  cfg = _config('lora', dims=(8, 8))
  with pytest.raises(ValueError, match=r'lora.dims has 2 values but Mu/8 has 4 blocks'):
    base.get('lora').build(cfg, CLASSES, None)
  with pytest.raises(ValueError, match="needs lora.layout='separate'"):
    base.get('lora').build(_config('lora', targets=('query',)), CLASSES, None)


def test_lora_matches_peft_on_a_transformers_vit():
  """peft's LoraConfig(target_modules=query/value) on transformers' ViT = our lora with
  layout='separate', targets=('query', 'value'), scale=alpha/r: logits, loss, LoRA/head grads."""
  transformers = pytest.importorskip('transformers')
  peft = pytest.importorskip('peft')
  from tests.models import test_vit_parity as hf_parity
  torch.manual_seed(0)
  hf_cfg = transformers.ViTConfig(hidden_size=D, num_hidden_layers=4, num_attention_heads=HEADS,
                                  intermediate_size=128, hidden_act='gelu', layer_norm_eps=1e-6,
                                  image_size=32, patch_size=8, qkv_bias=True,
                                  initializer_range=0.05, num_labels=CLASSES)
  hf = transformers.ViTForImageClassification(hf_cfg)
  names = {n.rsplit('.', 1)[-1] for n, _ in hf.named_modules()}
  targets = ['q_proj', 'v_proj'] if 'q_proj' in names else ['query', 'value']
  rank, alpha = 4, 8
  lora_cfg = peft.LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, lora_dropout=0.0,
                             modules_to_save=['classifier'])
  pm = peft.get_peft_model(hf, lora_cfg).eval()
  with torch.no_grad():
    for n, p in pm.named_parameters():
      if 'lora_B' in n or 'layernorm' in n or n.endswith('bias'):
        p.add_(0.2 * torch.randn_like(p))
  base_sd = {k.replace('base_model.model.vit.', '').replace('.base_layer', ''): v
             for k, v in pm.state_dict().items()
             if k.startswith('base_model.model.vit.') and 'lora_' not in k}
  flat = hf_parity.hf_to_npz_layout(base_sd, HEADS)
  cls_w = dict(pm.named_parameters())
  head = [n for n in cls_w if 'classifier' in n and 'modules_to_save' in n]
  flat['head/kernel'] = cls_w[[n for n in head if n.endswith('weight')][0]].detach().numpy().T
  flat['head/bias'] = cls_w[[n for n in head if n.endswith('bias')][0]].detach().numpy()
  for i in range(4):
    for ours, theirs in zip(('query', 'value'), targets):
      mods = {n: p for n, p in pm.named_parameters() if f'.{i}.' in n and theirs in n}
      a = [p for n, p in mods.items() if 'lora_A' in n][0].detach().numpy()
      b = [p for n, p in mods.items() if 'lora_B' in n][0].detach().numpy()
      flat[f'prompt/encoderblock_{i}/{ours}/lora_a'], flat[
          f'prompt/encoderblock_{i}/{ours}/lora_b'] = a.T, b.T
  cfg = _config('lora', layout='separate', targets=('query', 'value'), scale=alpha / rank,
                dim=rank, dropout=0.0)
  model = base.get('lora').build(cfg, CLASSES, None)
  params = traverse_util.unflatten_dict({k: jnp.asarray(v) for k, v in flat.items()}, sep='/')
  rng = np.random.default_rng(2)
  images = rng.uniform(-1, 1, (3, 32, 32, 3)).astype(np.float32)
  labels = rng.integers(0, CLASSES, 3).astype(np.int32)
  logits, loss, grads = _jax_step(model, params, images, labels)
  out = pm(pixel_values=torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).logits
  t_loss = torch.nn.functional.cross_entropy(out, torch.from_numpy(labels).long())
  t_loss.backward()
  np.testing.assert_allclose(logits, out.detach().numpy(), atol=1e-5, rtol=1e-5)
  assert loss == pytest.approx(t_loss.item(), abs=1e-5)
  for i in range(4):
    for ours, theirs in zip(('query', 'value'), targets):
      mods = {n: p for n, p in pm.named_parameters() if f'.{i}.' in n and theirs in n}
      for kind, leaf in (('lora_A', 'lora_a'), ('lora_B', 'lora_b')):
        g = [p.grad for n, p in mods.items() if kind in n][0].numpy()
        np.testing.assert_allclose(np.asarray(grads[f'prompt/encoderblock_{i}/{ours}/{leaf}']),
                                   g.T, atol=1e-5, rtol=1e-5)
  assert len([k for k in grads if k.startswith('prompt/')]) == 4 * 2 * 2


@pytest.mark.slow
@pytest.mark.parametrize('method', ['lora', 'adapter', 'prefix', 'bitfit'])
def test_trains_on_the_digits_backbone(tmp_path, pretrained_npz, method):
  """Two steps on the demo's pretrained backbone, export, reload: frozen tensors bit-identical
  (BitFit: only biases and the head change)."""
  from prompt_jax.export import tuned as export
  from prompt_jax.train import trainer as train
  cfg = micro_config(method, epochs=1, max_steps=2, export=True, warmup_epochs=0)
  cfg.unlock()
  cfg.init.checkpoint = pretrained_npz
  if method != 'bitfit':
    cfg[method] = getattr(common, method)(dims=(4, 0, 4, 4))
  cfg.lock()
  res = train.train_and_evaluate(cfg, str(tmp_path))
  assert res['steps'] == 2 and 0.0 <= res['test'] <= 1.0
  _, params, _ = export.load_tuned(pretrained_npz, str(tmp_path / 'tuned'))
  flat = traverse_util.flatten_dict(jax.device_get(params), sep='/')
  original = np.load(pretrained_npz)
  changed = {k for k in original.files if k in flat and not k.startswith('head/')
             and not np.array_equal(flat[k], original[k])}
  if method == 'bitfit':
    assert changed and all(k.endswith('/bias') for k in changed)
  else:
    assert not changed
    assert any(k.startswith('prompt/encoderblock_2/') for k in flat)
    assert not any(k.startswith('prompt/encoderblock_1/') for k in flat)


@pytest.mark.slow
def test_the_sweep_and_the_report_run_the_baselines(tmp_path):
  """LoRA (a delta in the prompt subtree) and BitFit (backbone biases) through the protocol's
  sweep on mocked VTAB and one report over both sweeps: a row each."""
  from prompt_jax.protocol import report
  from prompt_jax.protocol import sweep
  from tests import mocked
  npz = mocked.micro_checkpoints(str(tmp_path))['npz']
  dirs = []
  for method in ('lora', 'bitfit'):
    dirs.append(str(tmp_path / method))
    argv = [f'--config=configs/{method}_vtab.py', '--tasks=dtd', '--seeds=0',
            f'--workdir={dirs[-1]}', '--compilation_cache=', f'--config.init.checkpoint={npz}',
            '--config.model.variant=Mu/8', '--config.data.image_size=32',
            '--config.train.batch_size=16', '--config.train.epochs=1',
            '--config.train.warmup_epochs=0', '--config.train.eval_batch_size=32']
    with mocked.mocked_vtab(32):
      assert sweep.main(argv) == 0
    assert f'| {method} ' in (tmp_path / method / 'report.md').read_text()
  out = tmp_path / 'both.md'
  assert report.main([f'--workdirs={",".join(dirs)}', f'--out={out}']) == 0
  rows = [r.split('|')[2].strip() for r in out.read_text().splitlines()[2:4]]
  assert sorted(rows) == ['bitfit', 'lora'], out.read_text()
