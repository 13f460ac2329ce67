"""train.workdir: the recorded config and backbone, the writer lock, cache keys, strict JSON;
and the trainer's preparation cache built on them."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from helpers import changed, micro_config
from prompt_jax.checkpoints import backbone
from prompt_jax.train import trainer as train
from prompt_jax.util import treeio
from prompt_jax.train import workdir
from prompt_jax.data import registry as data_registry
from prompt_jax.methods import base

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _with_state(wd):
  (wd / 'checkpoints' / '4').mkdir(parents=True)


def test_a_changed_config_conflicts_only_once_the_workdir_holds_a_run(tmp_path):
  cfg = changed(micro_config('vpt'), init__checkpoint='/here/same_weights.npz')
  workdir.check(str(tmp_path), cfg)  # nothing recorded yet
  workdir.record(str(tmp_path), cfg, 'digest-a')
  other = changed(cfg, train__lr=0.5, vpt__num_prompts=3, train__log_every_steps=1,
                   init__checkpoint='/elsewhere/same_weights.npz')
  workdir.check(str(tmp_path), other)  # no checkpoint / results yet: nothing to protect
  _with_state(tmp_path)
  with pytest.raises(workdir.WorkdirError) as e:
    workdir.check(str(tmp_path), other)
  msg = str(e.value)
  assert 'train.lr: 2.0 (recorded) -> 0.5 (now)' in msg and 'vpt.num_prompts' in msg
  assert 'log_every_steps' not in msg and 'init.checkpoint' not in msg  # do not change numbers
  assert '--config.train.allow_config_change=True' in msg
  workdir.check(str(tmp_path), cfg, 'digest-a')  # the same run resumes
  with pytest.raises(workdir.WorkdirError, match='other weights'):
    workdir.check(str(tmp_path), cfg, 'digest-b')
  allowed = changed(other, train__allow_config_change=True)
  with pytest.raises(workdir.WorkdirError, match='other weights, which --config.train.allow_'):
    workdir.check(str(tmp_path), allowed, 'digest-b')  # the override covers keys, not weights
  workdir.check(str(tmp_path), allowed, 'digest-a')
  workdir.record(str(tmp_path), allowed, 'digest-a')
  run = workdir.read_run(str(tmp_path))
  assert run['backbone_digest'] == 'digest-a' and run['config']['train']['lr'] == 0.5
  change = run['changes'][-1]['keys']
  assert change['train.lr'] == [2.0, 0.5] and 'backbone_digest' not in change


def test_a_nonfinite_stop_refuses_an_unchanged_rerun(tmp_path):
  cfg = micro_config('vpt')
  workdir.record(str(tmp_path), cfg, 'd')
  workdir.mark_nonfinite(str(tmp_path), {'step': 3, 'stopped_at': 4, 'checkpoint': 2})
  with pytest.raises(workdir.WorkdirError, match='step 3 was non-finite under this same config'):
    workdir.check(str(tmp_path), cfg)
  workdir.check(str(tmp_path), changed(cfg, train__lr=0.1))  # no checkpoint: starts afresh
  retry = changed(cfg, train__allow_config_change=True)
  workdir.check(str(tmp_path), retry)
  workdir.record(str(tmp_path), retry, 'd')
  assert 'nonfinite' not in workdir.read_run(str(tmp_path))
  workdir.check(str(tmp_path), cfg)


def test_a_live_writer_is_an_error_and_a_dead_ones_lock_is_taken_over(tmp_path):
  wd = str(tmp_path)
  holder = subprocess.Popen(
      [sys.executable, '-c', 'import sys, time; from prompt_jax.train import workdir\n'
       'with workdir.lock(sys.argv[1]):\n  print("held", flush=True); time.sleep(120)', wd],
      cwd=ROOT, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == 'held'
    with pytest.raises(workdir.WorkdirError, match=f'pid {holder.pid} on .* use another --workdir'):
      with workdir.lock(wd):
        pass
    # The trainer fails as fast, before loading anything.
    with pytest.raises(workdir.WorkdirError, match=f'pid {holder.pid}'):
      train.train_and_evaluate(micro_config('vpt'), wd)
  finally:
    holder.send_signal(signal.SIGKILL)  # dies without releasing: a stale lock
    holder.wait()
  assert os.path.exists(tmp_path / workdir.LOCK_FILE)
  with workdir.lock(wd):
    with open(tmp_path / workdir.LOCK_FILE) as f:
      assert json.load(f)['pid'] == os.getpid()
  assert not os.path.exists(tmp_path / workdir.LOCK_FILE)  # released


def test_another_hosts_lock_cannot_be_checked_and_says_how_to_remove_it(tmp_path):
  with open(tmp_path / workdir.LOCK_FILE, 'w') as f:
    json.dump({'pid': 1, 'host': 'some-other-host', 'started': 'then'}, f)
  with pytest.raises(workdir.WorkdirError, match='some-other-host.*delete .*writer.lock'):
    with workdir.lock(str(tmp_path)):
      pass


def test_inputs_key_follows_the_declared_keys_files_and_backbone(tmp_path):
  cfg = micro_config('vpt')
  keys = ('data.task', 'vpt')
  key, inputs = workdir.inputs_key(cfg, keys, 'd1')
  assert inputs['config']['vpt']['num_prompts'] == cfg.vpt.num_prompts
  assert workdir.inputs_key(changed(cfg, train__lr=9.0), keys, 'd1')[0] == key
  assert workdir.inputs_key(changed(cfg, vpt__deep=False), keys, 'd1')[0] != key
  assert workdir.inputs_key(cfg, keys, 'd2')[0] != key
  f = tmp_path / 'aff.npy'
  np.save(f, np.eye(2))
  with_file = changed(cfg, seed=0)
  with_file.unlock()
  with_file.data.image_root = str(f)  # any str key naming a file
  k1 = workdir.inputs_key(with_file, keys, 'd1', files=('data.image_root',))[0]
  np.save(f, 2 * np.eye(2))
  assert workdir.inputs_key(with_file, keys, 'd1', files=('data.image_root',))[0] != k1


def test_results_are_strict_json(tmp_path):
  path = str(tmp_path / 'results.json')
  nulls = workdir.write_json(path, {'loss': float('nan'), 'acc': np.float32(0.5),
                                    'h': [{'x': float('inf')}]})
  assert nulls == ['/loss', '/h/0/x']
  with open(path) as f:
    got = json.loads(f.read(), parse_constant=lambda c: pytest.fail(f'non-strict JSON: {c}'))
  assert got == {'loss': None, 'acc': 0.5, 'h': [{'x': None}],
                 'nonfinite_as_null': ['/loss', '/h/0/x']}


def test_prepare_cache_is_keyed_by_its_inputs_and_the_backbone(tmp_path):
  calls = []

  def prepare(ctx):
    calls.append(ctx.backbone_digest)
    return {'anchors': (0, 2), 'bank': np.full((2, 3), len(calls), np.float32)}

  method = base.Recipe(prepare=prepare, prepare_keys=('data.task', 'vpt.num_prompts'))
  cfg = micro_config('vpt')

  def ctx(config, digest):
    return base.PrepareContext(config=config, source=None, backbone=None, backbone_params=None,
                               arch=None, workdir=str(tmp_path), features=None,
                               backbone_digest=digest)

  first = train.prepare_cached(method, ctx(cfg, 'random-backbone'))
  assert first['anchors'] == (0, 2) and first['bank'][0, 0] == 1
  again = train.prepare_cached(method, ctx(changed(cfg, train__lr=0.1), 'random-backbone'))
  assert len(calls) == 1 and again['bank'][0, 0] == 1  # lr is not an input of prepare
  other = train.prepare_cached(method, ctx(cfg, 'pretrained-backbone'))
  assert len(calls) == 2 and other['bank'][0, 0] == 2  # another backbone: prepared again
  train.prepare_cached(method, ctx(changed(cfg, vpt__num_prompts=1), 'pretrained-backbone'))
  assert len(calls) == 3
  stored = treeio.load(str(tmp_path / train.PREPARED))
  assert stored['inputs']['backbone'] == 'pretrained-backbone'
  undeclared = base.Recipe(prepare=prepare)  # keyed by the whole config
  train.prepare_cached(undeclared, ctx(cfg, 'pretrained-backbone'))
  train.prepare_cached(undeclared, ctx(changed(cfg, train__lr=0.1), 'pretrained-backbone'))
  assert len(calls) == 5
  assert not [f for f in os.listdir(tmp_path) if f.endswith('.pkl')]


@pytest.mark.slow
def test_a_rerun_with_another_config_or_backbone_is_an_error(tmp_path, monkeypatch, pretrained_npz):
  wd = str(tmp_path)
  first = changed(micro_config('vpt', epochs=1, max_steps=2, export=True),
                   init__checkpoint=pretrained_npz)
  train.train_and_evaluate(first, wd)
  other = changed(first, train__lr=0.5)
  with monkeypatch.context() as m:  # refused before any data or weights load
    m.setattr(data_registry, 'get_source', lambda c: pytest.fail('data loaded'))
    m.setattr(backbone, 'load', lambda *a: pytest.fail('weights loaded'))
    with pytest.raises(workdir.WorkdirError, match='train.lr: 2.0 \\(recorded\\) -> 0.5 \\(now\\)'):
      train.train_and_evaluate(other, wd)
  weights = dict(np.load(pretrained_npz))  # same file name and keys, other weights
  key = sorted(weights)[0]
  weights[key] = weights[key] + 1.0
  (tmp_path / 'elsewhere').mkdir()
  perturbed = str(tmp_path / 'elsewhere' / os.path.basename(pretrained_npz))
  np.savez(perturbed, **weights)
  with pytest.raises(workdir.WorkdirError, match="was trained on backbone .* other weights"):
    train.train_and_evaluate(changed(first, init__checkpoint=perturbed), wd)
  train.train_and_evaluate(changed(other, train__allow_config_change=True), wd)
  with open(tmp_path / 'tuned' / 'config.json') as f:
    assert json.load(f)['train']['lr'] == 0.5
  assert workdir.read_run(wd)['changes'][-1]['keys'] == {'train.lr': [2.0, 0.5]}


def test_one_rule_for_the_same_run_across_machines(tmp_path):
  """A run resumed on another machine (other data_dir / image_root / split_file, another mesh, the
  same weights file in another folder) is the same run for workdir.check and for the sweep; a
  changed hyperparameter or another weights file name is not, for both."""
  from prompt_jax.protocol import sweep
  cfg = changed(micro_config('vpt'), init__checkpoint='/here/w.npz')
  workdir.record(str(tmp_path), cfg, 'digest-a')
  _with_state(tmp_path)
  moved = changed(cfg, data__data_dir='/mnt/elsewhere', data__image_root='imgs',
                   data__split_file='/mnt/split.json', mesh__fsdp=2, mesh__distributed=True,
                   init__checkpoint='/mnt/weights/w.npz')
  workdir.check(str(tmp_path), moved, 'digest-a')
  recorded = workdir.read_run(str(tmp_path))['config']
  assert sweep.config_differences(recorded, moved) == []
  for other, key in ((changed(moved, train__lr=0.5), 'train.lr'),
                     (changed(moved, init__checkpoint='/mnt/weights/v.npz'), 'init.checkpoint')):
    with pytest.raises(workdir.WorkdirError, match=key):
      workdir.check(str(tmp_path), other, 'digest-a')
    assert [d.split(':')[0] for d in sweep.config_differences(recorded, other)] == [key]


@pytest.mark.slow
def test_an_interrupted_run_resumes_on_another_machine(tmp_path, pretrained_npz):
  """Killed after its last checkpoint (no results.json), then rerun with another data_dir and the
  weights copied to another folder: it resumes (no WorkdirError) and ends with the same numbers."""
  import shutil
  wd = str(tmp_path / 'run')
  cfg = changed(micro_config('vpt', epochs=1, checkpoint_every_steps=5),
                 init__checkpoint=pretrained_npz)
  first = train.train_and_evaluate(cfg, wd)
  os.remove(os.path.join(wd, 'results.json'))
  os.makedirs(tmp_path / 'other_machine')
  copy = str(tmp_path / 'other_machine' / os.path.basename(pretrained_npz))
  shutil.copy(pretrained_npz, copy)
  again = train.train_and_evaluate(
      changed(cfg, data__data_dir=str(tmp_path / 'data'), init__checkpoint=copy), wd)
  assert again['final'] == first['final'] and again['history'] == first['history']


def test_the_backbone_check_does_not_compare_the_config_again(tmp_path, monkeypatch):
  """workdir.check (the config) runs once before any work; once the weights are loaded the trainer
  only adds check_backbone (the digest)."""
  cfg = micro_config('vpt')
  workdir.record(str(tmp_path), cfg, 'digest-a')
  _with_state(tmp_path)
  monkeypatch.setattr(workdir, 'diff', lambda *a: pytest.fail('the config was compared again'))
  workdir.check_backbone(str(tmp_path), cfg, 'digest-a')
  with pytest.raises(workdir.WorkdirError, match='other weights'):
    workdir.check_backbone(str(tmp_path), cfg, 'digest-b')
  with pytest.raises(workdir.WorkdirError, match='other weights'):
    workdir.check_backbone(str(tmp_path), changed(cfg, train__allow_config_change=True),
                           'digest-b')


def test_a_garbage_or_deleted_run_record_is_refused(tmp_path):
  cfg = micro_config('vpt')
  _with_state(tmp_path)
  with pytest.raises(workdir.WorkdirError, match='holds a run .* but no run.json'):
    workdir.check(str(tmp_path), changed(cfg, train__lr=0.5))  # never mix two configs
  workdir.check(str(tmp_path), changed(cfg, train__allow_config_change=True))  # asked for
  (tmp_path / 'run.json').write_text('{garbage')
  with pytest.raises(workdir.WorkdirError, match=r'run\.json does not read as a run record '
                                                 r'\(JSONDecodeError'):
    workdir.check(str(tmp_path), cfg)
