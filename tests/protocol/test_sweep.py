"""protocol.sweep: jobs, selection on val only, skipping / resuming / failing runs, the table,
--dry_run commands that reproduce the sweep's own runs; end to end on mocked VTAB with a kill."""

import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

from prompt_jax.protocol import searches as protocol
from prompt_jax.protocol import sweep

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ----------------------------------------------------------------------------- a fake trainer


class Killed(BaseException):
  """A SIGKILL mid-run: not an Exception, so the sweep neither records nor survives it."""


class FakeTrain:
  """Stands in for main's 'train' program: writes results.json as the trainer does, with a val
  accuracy that is a known function of (lr, wd) and a test accuracy of the seed."""

  def __init__(self, fail_tasks=()):
    self.calls = []
    self.fail_tasks = set(fail_tasks)
    self.fail_jobs = set()   # job names ('dtd/trial_lr0.1_wd0') whose run raises
    self.kill_at = None      # the call number (1-based) at which the process is 'killed'

  @staticmethod
  def val(lr, wd):
    return {(0.5, 0.001): 0.6, (0.5, 0.0): 0.7, (0.1, 0.001): 0.7, (0.1, 0.0): 0.5}.get(
        (lr, wd), 0.1)

  def __call__(self, cfg, workdir):
    self.calls.append(workdir)
    if self.kill_at == len(self.calls):
      raise Killed(workdir)
    name = '/'.join(workdir.split(os.sep)[-2:])
    if name in self.fail_jobs:
      raise RuntimeError(f'job {name} broke')
    if cfg.recipe_task in self.fail_tasks or cfg.data.task in self.fail_tasks:
      raise RuntimeError(f'cannot train {cfg.data.task}\nsecond line')
    os.makedirs(workdir, exist_ok=True)
    row = {'epoch': 1}
    for s in cfg.data.eval_splits:
      row[s] = (self.val(cfg.train.lr, cfg.train.wd) if s != 'test'
                else 0.5 + cfg.seed / 100)
    res = {'method': cfg.method, 'variant': 'vpt_deep', 'task': cfg.data.task, 'seed': cfg.seed,
           'splits': {'train': cfg.data.train_split, 'val': cfg.data.val_split or None,
                      'eval': list(cfg.data.eval_splits)},
           'final': row, **{s: row[s] for s in cfg.data.eval_splits},
           'config': json.loads(cfg.to_json())}
    with open(os.path.join(workdir, 'results.json'), 'w') as f:
      json.dump(res, f)
    return res


@pytest.fixture
def fake(monkeypatch):
  from prompt_jax import main
  from prompt_jax.protocol import programs
  f = FakeTrain()
  monkeypatch.setitem(main.PROGRAMS, 'train', programs.Program(f))
  return f


def _sweep(tmp_path, *extra, tasks='dtd,svhn', search=('--search=vpt', '--lrs=0.5,0.1',
                                                       '--wds=0.001,0')):
  args = ['--config=configs/vpt_vtab.py', f'--tasks={tasks}', '--seeds=3,4',
          f'--workdir={tmp_path / "sw"}', '--compilation_cache=', *search, *extra]
  return sweep.main(args)


def _summary(tmp_path):
  return json.loads((tmp_path / 'sw' / 'sweep.json').read_text())


# ----------------------------------------------------------------------------- protocol


def test_task_sets():
  assert len(protocol.expand_tasks('vtab')) == 19
  assert protocol.expand_tasks('natural,eurosat,cifar,dtd') == (
      'caltech101', 'cifar100', 'dtd', 'oxford_flowers102', 'oxford_iiit_pet', 'svhn', 'sun397',
      'eurosat')
  assert protocol.expand_tasks('fgvc') == ('cub', 'nabirds', 'oxford_flowers', 'stanford_dogs',
                                           'stanford_cars')
  assert len(protocol.expand_tasks('b2n')) == 11
  with pytest.raises(ValueError, match='unknown task or task set'):
    protocol.expand_tasks('vtab,imagenet21k')
  g = protocol.SEARCHES['vpt'].grid
  assert len(g['train.lr']) * len(g['train.wd']) == 40


def test_task_spec():
  assert sweep.task_spec('configs/vpt_vtab.py', 'dtd') == 'configs/vpt_vtab.py:task=dtd'
  assert (sweep.task_spec('configs/spt_vtab.py:deep=False,backbone=mae', 'dtd') ==
          'configs/spt_vtab.py:task=dtd,deep=False,backbone=mae')
  with pytest.raises(sweep.SweepError, match='the sweep sets the task'):
    sweep.task_spec('configs/vpt_vtab.py:dtd', 'svhn')


def test_arguments_the_sweep_owns_are_errors(tmp_path, capsys):
  with pytest.raises(SystemExit):
    _sweep(tmp_path, '--config.train.lr=0.3')
  assert '--config.train.lr is set by the sweep' in capsys.readouterr().err
  with pytest.raises(SystemExit):
    _sweep(tmp_path, "--config.data.eval_splits=('test',)")
  with pytest.raises(SystemExit):
    _sweep(tmp_path, '--config.seed=1', search=())
  assert _sweep(tmp_path, '--config.vpt.num_promts=3', '--dry_run') == 2  # unknown key
  assert 'vpt.num_promts' in capsys.readouterr().err
  for key in ('data.task=downstream', 'recipe_task=dtd'):  # the task axis is --tasks
    with pytest.raises(SystemExit):
      _sweep(tmp_path, f'--config.{key}', search=())
    assert f'--config.{key.split("=")[0]} is the task axis' in capsys.readouterr().err
  assert _sweep(tmp_path, '--config.train.warmup_epochs=200', '--dry_run') == 2
  assert 'train.warmup_epochs=200 > train.epochs=100' in capsys.readouterr().err


# ----------------------------------------------------------------------------- selection


def test_search_selects_on_val_only_then_runs_every_seed(tmp_path, fake):
  assert _sweep(tmp_path) == 0
  s = _summary(tmp_path)
  # 2 tasks x (4 trials + 2 seeds); trials never evaluate test; finals train on train800val200.
  assert len(fake.calls) == 12
  for task in ('dtd', 'svhn'):
    sel = json.loads((tmp_path / 'sw' / task / 'selection.json').read_text())
    # (0.5, 0) and (0.1, 0.001) tie at 0.7: the smaller lr wins (VPT's find_best_lrwd).
    assert sel['chosen'] == {'train.lr': 0.1, 'train.wd': 0.001}
    assert sel['trial'] == 'trial_lr0.1_wd0.001' and sel['val_accuracy'] == 0.7
    for name in sel['trials']:
      r = json.loads((tmp_path / 'sw' / task / name / 'results.json').read_text())
      assert r['splits'] == {'train': 'train800', 'val': 'val200', 'eval': ['val200']}
      assert 'test' not in r
    for seed in (3, 4):
      r = json.loads((tmp_path / 'sw' / task / f'seed{seed}' / 'results.json').read_text())
      assert r['splits'] == {'train': 'train800val200', 'val': None, 'eval': ['test']}
      assert (r['config']['train']['lr'], r['config']['train']['wd'], r['seed']) == (
          0.1, 0.001, seed)
  assert s['selections']['dtd']['chosen'] == {'train.lr': 0.1, 'train.wd': 0.001}
  table = (tmp_path / 'sw' / 'report.md').read_text()
  assert 'val-selected hyperparameters (vpt grid, train800 -> val200' in table
  assert '| 53.50 ± 0.50 |' in table  # test = 0.5 + seed/100 over seeds 3, 4
  for out in ('report.csv', 'report.png', 'sweep.json'):
    assert (tmp_path / 'sw' / out).exists()
  assert {j['status'] for j in s['jobs']} == {'ran'}


def test_selection_never_reads_test(tmp_path):
  plan, _ = sweep.parse_args(['--config=configs/vpt_vtab.py', '--tasks=dtd', '--search=vpt',
                              '--lrs=0.5', '--wds=0', f'--workdir={tmp_path}'])
  (trial,) = plan.trials('dtd')
  cfg = sweep.job_config(trial)
  assert cfg.data.eval_splits == ('val200',) and cfg.data.train_split == 'train800'
  assert 'test' not in cfg.data.eval_splits
  bad = sweep.Job(**{**trial.__dict__, 'overrides': trial.overrides + (
      ('data.eval_splits', "('val200', 'test')"),)})
  with pytest.raises(sweep.SweepError, match='never read test'):
    sweep.check_no_test(bad, sweep.job_config(bad))
  with pytest.raises(sweep.SweepError, match='selection never reads test'):
    sweep.select('dtd', [trial], {trial.workdir: {'splits': {'eval': ['val200', 'test']},
                                                 'final': {'val200': 0.5, 'test': 0.4}}},
                 plan.search, 'val200')


# ----------------------------------------------------------------------------- resuming


def test_finished_runs_are_skipped_and_failures_recorded(tmp_path, fake):
  fake.fail_tasks = {'svhn'}
  assert _sweep(tmp_path) == 1
  s = _summary(tmp_path)
  assert [f['job'] for f in s['failures']][:4] == [f'svhn/trial_lr{lr}_wd{wd}' for lr, wd in
                                                   ((0.5, 0.001), (0.5, 0), (0.1, 0.001),
                                                    (0.1, 0))]
  assert s['failures'][0]['error'] == 'RuntimeError: cannot train svhn'
  assert 'no search trial finished' in s['failures'][-1]['error']
  assert (tmp_path / 'sw' / 'svhn' / 'trial_lr0.5_wd0' / sweep.FAILED).exists()
  assert 'dtd' in (tmp_path / 'sw' / 'report.md').read_text()  # the rest went on
  n = len(fake.calls)
  fake.fail_tasks = set()
  assert _sweep(tmp_path) == 0  # rerun: only svhn's jobs run
  assert len(fake.calls) - n == 6 and all('/svhn/' in c for c in fake.calls[n:])
  assert not (tmp_path / 'sw' / 'svhn' / 'trial_lr0.5_wd0' / sweep.FAILED).exists()
  assert _sweep(tmp_path) == 0 and len(fake.calls) - n == 6  # nothing left to run
  statuses = {j['status'] for j in _summary(tmp_path)['jobs']}
  assert statuses == {'finished earlier'}


def _trials(tmp_path, task='dtd'):
  return sorted(p.parent.name for p in (tmp_path / 'sw' / task).glob('trial_*/results.json'))


def test_killed_mid_grid_then_rerun_with_another_grid(tmp_path, fake):
  """Killed during the 4th trial of a 2 x 2 grid; rerun with a grid that keeps one finished trial.
  The kept trial is skipped, the new one runs, and the finished trials no longer in the grid stay
  on disk but are not selected from, listed or tabulated (the best val scores, 0.7, are theirs)."""
  fake.kill_at = 4
  with pytest.raises(Killed):
    _sweep(tmp_path, tasks='dtd')
  assert _trials(tmp_path) == ['trial_lr0.1_wd0.001', 'trial_lr0.5_wd0', 'trial_lr0.5_wd0.001']
  assert not (tmp_path / 'sw' / 'dtd' / 'selection.json').exists()
  fake.kill_at, n = None, len(fake.calls)
  assert _sweep(tmp_path, tasks='dtd', search=('--search=vpt', '--lrs=0.5,0.05',
                                               '--wds=0.001')) == 0
  ran = [os.path.basename(c) for c in fake.calls[n:]]
  assert ran == ['trial_lr0.05_wd0.001', 'seed3', 'seed4']  # trial_lr0.5_wd0.001 skipped
  s = _summary(tmp_path)
  assert {j['job']: j['status'] for j in s['jobs']} == {
      'dtd/trial_lr0.5_wd0.001': 'finished earlier', 'dtd/trial_lr0.05_wd0.001': 'ran',
      'dtd/seed3': 'ran', 'dtd/seed4': 'ran'}
  sel = json.loads((tmp_path / 'sw' / 'dtd' / 'selection.json').read_text())
  assert sel == s['selections']['dtd']
  assert set(sel['trials']) == {'trial_lr0.5_wd0.001', 'trial_lr0.05_wd0.001'}
  assert sel['chosen'] == {'train.lr': 0.5, 'train.wd': 0.001} and sel['val_accuracy'] == 0.6
  assert sel['trials_missing'] == []
  for seed in (3, 4):
    r = json.loads((tmp_path / 'sw' / 'dtd' / f'seed{seed}' / 'results.json').read_text())
    assert (r['config']['train']['lr'], r['config']['train']['wd']) == (0.5, 0.001)
  report_md = (tmp_path / 'sw' / 'report.md').read_text()
  assert '| 53.50 ± 0.50 |' in report_md
  assert s['failures'] == [] and s['pending'] == []


def test_saved_selection_from_another_grid_is_not_reused(tmp_path, fake, capsys):
  """A finished sweep rerun with another grid: its selection.json was made from other trials, so
  the sweep selects again among the new grid's trials; the final runs trained with the old choice
  then differ from what the sweep gives them, an error naming the difference (never a stale row)."""
  assert _sweep(tmp_path, tasks='dtd') == 0  # selects lr 0.1, wd 0.001
  assert _sweep(tmp_path, tasks='dtd', search=('--search=vpt', '--lrs=0.5', '--wds=0.001')) == 2
  err = capsys.readouterr().err
  assert 'seed3 finished with another config' in err and 'train.lr: 0.1 -> 0.5' in err
  sel = json.loads((tmp_path / 'sw' / 'dtd' / 'selection.json').read_text())
  assert set(sel['trials']) == {'trial_lr0.5_wd0.001'} and sel['chosen']['train.lr'] == 0.5


def test_one_failing_job_among_others(tmp_path, fake, capsys):
  """One trial of dtd fails: the other trials, dtd's selection among them, its finals and svhn all
  run; the failure is in sweep.json and the summary; exit 1. The rerun retries only that trial
  (the selection made without it is kept, listing it as missing: delete selection.json to select
  again), and exits 0."""
  fake.fail_jobs = {'dtd/trial_lr0.1_wd0'}
  assert _sweep(tmp_path) == 1
  out = capsys.readouterr().out
  s = _summary(tmp_path)
  error = 'RuntimeError: job dtd/trial_lr0.1_wd0 broke'
  assert s['failures'] == [{'job': 'dtd/trial_lr0.1_wd0', 'error': error,
                            'workdir': str(tmp_path / 'sw' / 'dtd' / 'trial_lr0.1_wd0')}]
  assert f'FAILED dtd/trial_lr0.1_wd0: {error}' in out
  assert '11 runs ran, 0 had finished earlier, 1 failed' in out
  status = {j['job']: j['status'] for j in s['jobs']}
  assert status.pop('dtd/trial_lr0.1_wd0') == f'failed: {error}'
  assert set(status.values()) == {'ran'} and len(status) == 11
  assert (tmp_path / 'sw' / 'dtd' / 'trial_lr0.1_wd0' / sweep.FAILED).exists()
  assert s['selections']['dtd']['trials_missing'] == ['trial_lr0.1_wd0']
  assert '| 53.50 ± 0.50 | 53.50 ± 0.50 |' in (tmp_path / 'sw' / 'report.md').read_text()
  fake.fail_jobs, n = set(), len(fake.calls)
  assert _sweep(tmp_path) == 0
  assert [os.path.basename(c) for c in fake.calls[n:]] == ['trial_lr0.1_wd0']
  assert not (tmp_path / 'sw' / 'dtd' / 'trial_lr0.1_wd0' / sweep.FAILED).exists()
  s = _summary(tmp_path)
  assert s['failures'] == [] and s['selections']['dtd']['trials_missing'] == ['trial_lr0.1_wd0']


def test_rerun_with_another_config_is_an_error(tmp_path, fake, capsys):
  assert _sweep(tmp_path, tasks='dtd') == 0
  assert _sweep(tmp_path, '--config.vpt.num_prompts=10', tasks='dtd') == 2
  err = capsys.readouterr().err
  assert 'finished with another config' in err and 'vpt.num_prompts: 50 -> 10' in err


def test_dry_run_prints_pending_commands(tmp_path, fake, capsys):
  assert _sweep(tmp_path, '--dry_run', tasks='dtd') == 0
  out = capsys.readouterr()
  lines = out.out.splitlines()
  assert len(lines) == 4 and all(l.startswith('python -m prompt_jax.main ') for l in lines)
  assert 'final runs wait for its search' in out.err
  argv = shlex.split(lines[0])[3:]
  assert argv[:2] == ['--config=configs/vpt_vtab.py:task=dtd',
                      f'--workdir={tmp_path}/sw/dtd/trial_lr0.5_wd0.001']
  assert "--config.data.eval_splits=('val200',)" in argv and '--config.seed=3' in argv
  assert fake.calls == []
  assert _sweep(tmp_path, tasks='dtd') == 0  # run it all, then ask again
  capsys.readouterr()
  assert _sweep(tmp_path, '--dry_run', tasks='dtd') == 0
  out = capsys.readouterr()
  assert out.out == '' and '# 0 jobs to run, 6 finished' in out.err


def test_shards_split_tasks(tmp_path, fake):
  assert _sweep(tmp_path, '--shard=1/2', tasks='dtd,svhn,eurosat', search=()) == 0
  assert sorted({c.split('/sw/')[1].split('/')[0] for c in fake.calls}) == ['svhn']


# ----------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_dry_run_command_reproduces_the_sweeps_run(tmp_path, pretrained_npz, capsys):
  """One printed command, run as printed (a new process), writes the results.json the sweep's
  own in-process run writes."""
  common = ['--config=tests/outside/vpt_digits.py', '--tasks=dtd', '--seeds=7', '--search=vpt',
            '--lrs=0.5', '--wds=0.001', f'--config.init.checkpoint={pretrained_npz}']
  assert sweep.main(common + [f'--workdir={tmp_path / "a"}', '--dry_run']) == 0
  (command,) = capsys.readouterr().out.splitlines()
  argv = shlex.split(command)
  assert argv[:3] == ['python', '-m', 'prompt_jax.main']
  out = subprocess.run([sys.executable] + argv[1:], cwd=ROOT, capture_output=True, text=True,
                       timeout=900)
  assert out.returncode == 0, out.stderr[-3000:]
  assert sweep.main(common + [f'--workdir={tmp_path / "b"}']) == 0
  a = json.loads((tmp_path / 'a/dtd/trial_lr0.5_wd0.001/results.json').read_text())
  b = json.loads((tmp_path / 'b/dtd/trial_lr0.5_wd0.001/results.json').read_text())
  for r in (a, b):
    del r['train_seconds_this_run']
  assert a == b
  assert a['history'][-1]['val200'] > 0.2 and 'test' not in a


_DRIVER = """
import sys
sys.path.insert(0, {root!r})
from tests import mocked
from prompt_jax.protocol import sweep
with mocked.mocked_vtab({n}):
  sys.exit(sweep.main({argv!r}))
"""


def _mocked_sweep_args(tmp_path, npz, tasks):
  return ['--config=configs/vpt_vtab.py', f'--tasks={tasks}', '--seeds=0,1', '--search=vpt',
          '--lrs=0.5,0.05', '--wds=0.001,0', f'--workdir={tmp_path / "sw"}',
          f'--config.init.checkpoint={npz}', '--config.model.variant=Mu/8',
          '--config.data.image_size=32', '--config.train.batch_size=16',
          '--config.train.epochs=2', '--config.train.warmup_epochs=1',
          '--config.train.eval_batch_size=32', '--config.vpt.num_prompts=4']


@pytest.mark.slow
def test_mocked_vtab_sweep_killed_and_rerun(tmp_path):
  """The protocol on TFDS mock data: VPT grid search (2 x 2) on train800 -> val200, 2 seeds on
  train800val200 -> test, the table. The sweep is killed (SIGKILL) after some runs; the same
  command then finishes the rest without redoing the finished ones.
  PROMPT_JAX_SWEEP_TASKS=vtab runs all 19 tasks (the CI default is one; every task runs in
  test_protocol_offline_from_an_empty_directory on `prepare --mock` data)."""
  from tests import mocked
  tasks = os.environ.get('PROMPT_JAX_SWEEP_TASKS', 'dtd')
  n_tasks = len(protocol.expand_tasks(tasks))
  npz = mocked.micro_checkpoints(str(tmp_path))['npz']
  argv = _mocked_sweep_args(tmp_path, npz, tasks)
  driver = _DRIVER.format(root=ROOT, n=32, argv=argv)
  proc = subprocess.Popen([sys.executable, '-c', driver], cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  deadline = time.time() + 900
  done = []
  while time.time() < deadline and proc.poll() is None:
    done = sorted((tmp_path / 'sw').glob('*/*/results.json'))
    if len(done) >= 3:
      break
    time.sleep(0.5)
  assert proc.poll() is None, 'the sweep ended before it could be killed'
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  finished = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in
              (tmp_path / 'sw').glob('*/*/results.json')}
  assert len(finished) >= 3
  with mocked.mocked_vtab(32):
    assert sweep.main(argv) == 0
  for p, (mtime, content) in finished.items():  # not redone
    assert (p.stat().st_mtime_ns, p.read_bytes()) == (mtime, content)
  s = json.loads((tmp_path / 'sw' / 'sweep.json').read_text())
  status = [j['status'] for j in s['jobs']]
  assert len(status) == n_tasks * 6 and set(status) == {'finished earlier', 'ran'}
  assert status.count('finished earlier') == len(finished)
  assert s['failures'] == []
  table = (tmp_path / 'sw' / 'report.md').read_text()
  header = [c.strip() for c in table.splitlines()[0].strip('|').split('|')]
  assert set(protocol.expand_tasks(tasks)) <= set(header)
  assert 'natural' in header
  row = [c.strip() for c in table.splitlines()[2].strip('|').split('|')]
  assert row[1] == 'vpt_deep' and all('±' in c for c in row[4:4 + n_tasks])
  for task in protocol.expand_tasks(tasks):
    sel = json.loads((tmp_path / 'sw' / task / 'selection.json').read_text())
    assert len(sel['trials']) == 4 and sel['chosen']['train.lr'] in (0.5, 0.05)


def test_base_to_novel_sweep_table(tmp_path, monkeypatch):
  """SAP's protocol: program b2n, one job per dataset and CoOp seed (which also draws the shots),
  b2n.json as the finished-run file, a table of base / novel / harmonic mean."""
  calls = []

  def fake_b2n(cfg, workdir):
    calls.append((cfg.data.task, cfg.seed, cfg.data.fewshot_seed))
    base = dict(json.loads(cfg.to_json()))
    base['data']['subset'] = 'base'
    base['train']['export'] = True
    res = {'method': 'sap', 'task': cfg.data.task, 'base': 0.8, 'novel': 0.6 + cfg.seed / 100,
           'hm': 0.7, 'zeroshot': {'base': 0.7, 'novel': 0.7, 'hm': 0.7},
           'train': {'variant': 'sap', 'seed': cfg.seed, 'config': base}}
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, 'b2n.json'), 'w') as f:
      json.dump(res, f)
    return res

  from prompt_jax.protocol import b2n as sap_b2n
  monkeypatch.setattr(sap_b2n, 'run', fake_b2n)  # SAP's program 'b2n' (Method.programs)
  args = ['--config=configs/sap_b2n.py', '--tasks=dtd,eurosat', '--seeds=coop',
          f'--workdir={tmp_path / "sw"}', '--compilation_cache=',
          '--config.data.split_file=/coop/{task}/split.json']
  assert sweep.main(args) == 0
  assert sorted(calls) == [(t, s, s) for t in ('dtd', 'eurosat') for s in (1, 2, 3)]
  cfg = sweep.job_config(sweep.parse_args(args)[0].runs('eurosat')[0])
  assert cfg.data.split_file == '/coop/eurosat/split.json'
  table = (tmp_path / 'sw' / 'report.md').read_text()
  assert '| sap | sap |' in table and 'novel classes' in table and 'clip_zeroshot' in table
  assert '62.00 ± 0.82' in table  # novel = 0.6 + seed/100 over CoOp seeds 1, 2, 3
  assert sweep.main(args) == 0 and len(calls) == 6  # finished: b2n.json skips them


@pytest.mark.slow
def test_protocol_offline_from_an_empty_directory(tmp_path):
  """The README's offline protocol, as a user types it: `prepare --mock --tasks=vtab`, then
  `prompt_jax.protocol.sweep --tasks=vtab` on that folder tree (no patched internals), killed
  after some runs and rerun; the 19-task table with its group means and the figure."""
  from prompt_jax.data import prepare
  from prompt_jax.data import tasks
  data = tmp_path / 'vtab_mock'
  assert prepare.main(['--mock', '--tasks=vtab', f'--data_dir={data}', '--mock_examples=16']) == 0
  argv = ['--config=configs/vpt_vtab.py', '--tasks=vtab', '--seeds=0', f'--workdir={tmp_path/"sw"}',
          '--config.data.source=folder', f'--config.data.data_dir={data}',
          '--config.init.checkpoint=random', '--config.model.variant=Mu/8',
          '--config.data.image_size=32', '--config.train.batch_size=16', '--config.train.epochs=1',
          '--config.train.warmup_epochs=0', '--config.train.eval_batch_size=16',
          '--config.vpt.num_prompts=2']
  proc = subprocess.Popen([sys.executable, '-m', 'prompt_jax.protocol.sweep', *argv], cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 900
  while time.time() < deadline and proc.poll() is None:
    if len(list((tmp_path / 'sw').glob('*/*/results.json'))) >= 2:
      break
    time.sleep(0.5)
  assert proc.poll() is None, 'the sweep ended before it could be killed'
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  finished = len(list((tmp_path / 'sw').glob('*/*/results.json')))
  assert sweep.main(argv) == 0
  s = json.loads((tmp_path / 'sw' / 'sweep.json').read_text())
  status = [j['status'] for j in s['jobs']]
  assert len(status) == 19 and status.count('finished earlier') == finished >= 2
  assert s['failures'] == []
  table = (tmp_path / 'sw' / 'report.md').read_text()
  header = [c.strip() for c in table.splitlines()[0].strip('|').split('|')]
  assert set(tasks.VTAB_TASKS) <= set(header)
  assert {'natural', 'specialized', 'structured', 'mean'} <= set(header)
  assert (tmp_path / 'sw' / 'report.png').stat().st_size > 10_000
