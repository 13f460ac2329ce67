"""Start-up checks: every bad value is named with its valid values, before data or weights load."""

import pytest

from helpers import changed, micro_config
from prompt_jax.checkpoints import backbone
from prompt_jax import checkpoints
from prompt_jax.train import validation
from prompt_jax.configs import common


def _cfg(config=None, **dotted):
  return changed(config or micro_config('vpt'), **dotted)


def _problems(c, **kw):
  with pytest.raises(validation.ConfigError) as e:
    validation.check(c, **kw)
  return str(e.value)


@pytest.mark.parametrize('module', ['vpt_vtab', 'ship_vtab', 'linear_vtab', 'full_vtab',
                                    'davpt_vtab', 'davpt_fgvc', 'spt_vtab', 'sap_b2n'])
def test_every_shipped_config_needs_an_explicit_backbone(module):
  import importlib
  c = importlib.import_module(f'prompt_jax.configs.{module}').get_config()
  msg = _problems(c)
  assert 'config.init.checkpoint is empty' in msg
  assert f'--config.init.format={c.init.format}' in msg and 'checkpoint=random' in msg
  if c.init.format == 'npz':
    assert 'gs://vit_models/imagenet21k/ViT-B_16.npz' in msg
    assert 'curl -O https://storage.googleapis.com/vit_models/imagenet21k/ViT-B_16.npz' in msg
  validation.check(_cfg(c, init__checkpoint='weights.file'))  # otherwise valid


def test_the_demo_and_the_random_backbone_pass():
  from prompt_jax.configs import demo
  validation.check(demo.get_config())  # the demo names its own backbones
  validation.check(micro_config('vpt'), num_devices=1)


def test_load_refuses_an_empty_checkpoint_too():
  from prompt_jax.methods import base
  with pytest.raises(checkpoints.CheckpointError, match='gs://vit_models'):
    backbone.load(base.get('vpt'), _cfg(init__checkpoint=''))


def test_bad_values_are_all_listed_with_the_valid_ones():
  c = _cfg(train__lr=0.0, train__epochs=0, train__keep_checkpoints=0,
           train__checkpoint_every_steps=0, train__eval_every_epochs=0, train__log_every_steps=0,
           train__optimizer='adam', train__max_steps=0, vpt__num_prompts=0, vpt__dropout=1.0,
           model__drop_path=-0.1, data__image_size=30, data__normalization='unit',
           data__val_split='val', data__eval_splits=('test',), init__format='caffe',
           model__attention='flash', data__cache_dtype='float16', data__cache_memory_gb=-1.0)
  msg = _problems(c)
  for expected in [
      'train.lr=0.0: must be > 0', 'train.epochs=0: must be >= 1',
      'train.keep_checkpoints=0: must be >= 1', 'train.checkpoint_every_steps=0: must be >= 1',
      'train.eval_every_epochs=0: must be >= 1', 'train.log_every_steps=0: must be >= 1',
      "train.optimizer='adam': must be one of ['sgd', 'adamw']",
      'train.max_steps=0: must be >= 1, or -1', 'vpt.num_prompts=0: must be >= 1',
      'vpt.dropout=1.0: must be in [0, 1)', 'model.drop_path=-0.1: must be in [0, 1)',
      "data.image_size=30: must be a multiple of the patch size 8 of model.variant='Mu/8'",
      "data.normalization='unit': must be one of", "data.val_split='val': must be one of",
      "init.format='caffe': must be one of ['clip_hf', 'clip_openai', 'mae', 'mocov3', 'npz'",
      "model.attention='flash': must be one of",
      "data.cache_dtype='float16': must be one of ['float32', 'uint8']",
      'data.cache_memory_gb=-1.0: must be >= 0']:
    assert expected in msg, (expected, msg)


def test_method_names_sections_and_programs():
  known = ("['adapter', 'bitfit', 'davpt', 'full', 'linear', 'lora', 'prefix', 'sap', 'ship', "
           "'spt', 'vpt']")
  assert f"method='vtp': must be one of {known}" in _problems(_cfg(method='vtp'))
  assert "reads the config section 'ship'" in _problems(_cfg(method='ship'))
  from prompt_jax.protocol import programs
  msg = _problems(_cfg(program='b2n'), rules=(programs.problems,))
  assert "'b2n' needs an open-vocabulary method (sap)" in msg
  c = _cfg(method='davpt')
  c.unlock()
  c.davpt = common.davpt(num_proxies=0, dropout=1.5)
  c.lock()
  msg = _problems(c)
  assert 'davpt.num_proxies=0: must be >= 1' in msg and 'davpt.dropout=1.5' in msg
  assert "prompt_init.name='sptt': must be one of ['default', 'spt']" in _problems(
      _cfg(prompt_init__name='sptt'))


def test_batch_sizes_must_split_over_the_devices():
  msg = _problems(_cfg(train__batch_size=30, mesh__fsdp=4), num_devices=8)
  assert 'train.batch_size=30: must be a multiple of the 8 devices' in msg
  validation.check(_cfg(train__batch_size=32, mesh__fsdp=4), num_devices=8)
  assert 'mesh.fsdp=3: must divide the 8 devices' in _problems(_cfg(mesh__fsdp=3), num_devices=8)


def test_splits_must_exist_in_the_source():
  c = _cfg(data__eval_splits=('val200', 'tset'), data__train_split='train800')
  with pytest.raises(validation.ConfigError, match="data.eval_splits='tset': the digits source "
                     "has no such split; it has \\['test', 'train800', 'val200'\\]"):
    validation.check_splits(c, {'train800': 300, 'val200': 100, 'test': 500})


def test_the_trainer_checks_before_any_data_or_weights_load(tmp_path, monkeypatch):
  from prompt_jax.train import trainer as train
  from prompt_jax.data import registry
  monkeypatch.setattr(registry, 'get_source', lambda c: pytest.fail('data loaded'))
  monkeypatch.setattr(backbone, 'load', lambda m, c: pytest.fail('weights loaded'))
  with pytest.raises(validation.ConfigError, match='keep_checkpoints=0'):
    train.train_and_evaluate(_cfg(train__keep_checkpoints=0), str(tmp_path / 'wd'))
  assert not (tmp_path / 'wd').exists()


def test_the_rules_run_once_per_config(monkeypatch):
  """main checks before TensorFlow loads; the trainer's checks of the same config
  (train_and_evaluate, build) then only add the device rules."""
  calls = []
  monkeypatch.setattr(validation, 'RULES', (lambda c: calls.append(c.train.lr) or [],))
  cfg = _cfg(train__lr=0.125)
  validation.check(cfg)                   # main
  validation.check(cfg, num_devices=1)    # train_and_evaluate
  validation.check(cfg.copy_and_resolve_references(), num_devices=1)  # build: same content
  assert calls == [0.125]
  assert 'multiple of the 3 devices' in _problems(cfg, num_devices=3)  # device rules still run
  validation.check(_cfg(train__lr=0.25))
  assert calls == [0.125, 0.25]


def test_a_learning_rate_above_the_bound_is_warned_about():
  assert validation.warnings(_cfg(train__lr=0.5)) == []
  (msg,) = validation.warnings(_cfg(train__lr=1e4))
  assert msg.startswith('train.lr=10000.0 is above 100,') and '\n' not in msg

