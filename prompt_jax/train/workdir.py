"""A workdir's identity and its one writer: the recorded config and backbone, the writer lock, keys
for caches of derived values, strict JSON.

  workdir.check(wd, config)             # before any work: another config's run here is an error
  workdir.check_backbone(wd, config, digest)  # once the backbone is loaded: another backbone
  workdir.record(wd, config, digest)    # writes wd/run.json
  with workdir.lock(wd): ...            # one writer; a second process fails fast
  key, inputs = workdir.inputs_key(config, ('data.task', 'ship'), digest, files=())

wd/run.json: {'config': the config as JSON, 'backbone_digest' (`tree.digest` of the loaded
backbone), 'backbone_checkpoint', 'created', 'changes': [{'time', 'keys': {key: [old, new]}}]
(accepted with `train.allow_config_change`), and 'nonfinite' ({'step', ...}) after a stop on a
non-finite training step}. A workdir "holds a run" once it has a checkpoint or results.json; only
then does a different config or backbone conflict. `diff` is the one rule for "the same run"
(bookkeeping keys and this machine's paths and mesh never conflict; the checkpoint by its file name,
its content through the digest); the sweep uses it too.

The lock (wd/writer.lock: pid, host, start time) is an exclusive file create. A lock whose process
is gone (same host: the pid is dead or now names another process) is stale and taken over with a
warning. On gs:// workdirs there is no lock: tf.io.gfile / epath have no create-if-absent, so a
warning says so once and the user must keep to one writer.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import math
import os
import socket
import time
from typing import Any
from collections.abc import Iterator, Sequence

from absl import logging
from etils import epath
import ml_collections
import numpy as np

from prompt_jax.methods.registry import METHODS

RUN_FILE = 'run.json'
LOCK_FILE = 'writer.lock'
OVERRIDE = 'train.allow_config_change'
# "The same run" (workdir.check, the sweep's finished-job check): configs equal except
#   IGNORED_KEYS   bookkeeping that does not change the run's numbers;
#   MACHINE_KEYS   this machine's paths and devices (a sweep job resumed on another machine with
#                  other folders or another mesh is the same run), and a method's own
#                  `Method.machine_keys`;
#   init.checkpoint  compared by file name (the folder is the machine's); the weights themselves
#                  by the backbone digest recorded in run.json.
IGNORED_KEYS = frozenset({OVERRIDE, 'train.log_every_steps', 'train.checkpoint_every_steps',
                          'train.keep_checkpoints', 'train.export'})
MACHINE_KEYS = frozenset({'data.data_dir', 'data.image_root', 'data.split_file',
                          'mesh.distributed', 'mesh.fsdp'})
_ABSENT = '<absent>'
_warned_remote_lock = False


class WorkdirError(RuntimeError):
  """The workdir holds another run, or another process writes it; the message names the fix."""


def _now() -> str:
  return datetime.datetime.now().astimezone().isoformat(timespec='seconds')


def config_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The config as plain JSON values (tuples become lists)."""
  return json.loads(config.to_json())


def flatten(d: dict[str, Any], prefix: str = '') -> dict[str, Any]:
  """A config as JSON {'train': {'lr': .1}} -> {'train.lr': .1}; lists become tuples (the one
  flattener: run identity here, report columns, the sweep)."""
  out = {}
  for k, v in d.items():
    if isinstance(v, dict) and v:
      out.update(flatten(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = tuple(v) if isinstance(v, list) else v
  return out


def _machine_keys(method: Any) -> frozenset[str]:
  if not isinstance(method, str):
    return MACHINE_KEYS
  own = METHODS.get(method).machine_keys if method in METHODS else ()
  return MACHINE_KEYS | frozenset(own)


def diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
  """{dotted key: (old, new)} over the keys in which two configs (as JSON) are not the same run
  (absent: '<absent>'): every key but `IGNORED_KEYS`, `MACHINE_KEYS` and the method's
  `machine_keys`; init.checkpoint by file name."""
  a, b = flatten(old), flatten(new)
  skip = IGNORED_KEYS | _machine_keys(a.get('method')) | _machine_keys(b.get('method'))
  for d in (a, b):
    if d.get('init.checkpoint'):
      d['init.checkpoint'] = os.path.basename(str(d['init.checkpoint']))
  keys = sorted((set(a) | set(b)) - skip)
  return {k: (a.get(k, _ABSENT), b.get(k, _ABSENT)) for k in keys
          if a.get(k, _ABSENT) != b.get(k, _ABSENT)}


def _read_json(path: epath.Path) -> Any:
  return json.loads(path.read_text()) if path.exists() else None


def _write_text(path: epath.Path, text: str) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f'{path.name}.tmp{os.getpid()}')
  tmp.write_text(text)
  tmp.replace(path)


def read_run(workdir: str) -> dict[str, Any] | None:
  """wd/run.json, or None when absent. Raises WorkdirError when it does not read as a run record
  (it decides which config and backbone the workdir's results belong to)."""
  path = epath.Path(workdir) / RUN_FILE
  try:
    run = _read_json(path)
  except (ValueError, UnicodeDecodeError) as e:
    run, why = None, f'{type(e).__name__}: {e}'
  else:
    why = None if run is None or (isinstance(run, dict) and 'config' in run) else 'no config'
  if why:
    raise WorkdirError(f'{path} does not read as a run record ({why}): restore it, or use a new '
                       '--workdir (or move this one away) to start afresh')
  return run


def has_state(workdir: str) -> bool:
  """True when the workdir holds a run: a checkpoint step or results.json."""
  wd = epath.Path(workdir)
  ckpts = wd / 'checkpoints'
  if ckpts.exists() and any(p.name.isdigit() for p in ckpts.iterdir()):
    return True
  return (wd / 'results.json').exists()


def _show(v: Any) -> str:
  return json.dumps(v) if not isinstance(v, str) or v != _ABSENT else v


def check(workdir: str, config: ml_collections.ConfigDict, digest: str | None = None) -> None:
  """Raises WorkdirError when the workdir holds a run of another config, or stopped on a
  non-finite step under this same config, unless `config.train.allow_config_change`; given
  `digest`, when it holds a run of another backbone (whatever the override)."""
  run = read_run(workdir)
  allow = config.train.allow_config_change
  if run is None:
    if has_state(workdir) and not allow:
      raise WorkdirError(
          f'{workdir} holds a run (checkpoints or results.json) but no {RUN_FILE}: its config '
          'cannot be compared with this one, and two configs must not share one results file. '
          f'Use a new --workdir, or pass --config.{OVERRIDE}=True to continue it under this '
          'config.')
    if has_state(workdir):
      logging.warning('%s holds a run but no %s: continued under this config (%s=True)',
                      workdir, RUN_FILE, OVERRIDE)
    return
  changed = diff(run['config'], config_dict(config))
  fix = (f'Use a new --workdir, or pass --config.{OVERRIDE}=True to continue this run under the '
         f'new config (the change is recorded in {RUN_FILE}).')
  bad = run.get('nonfinite')
  if bad and not changed and not allow:
    raise WorkdirError(
        f'{workdir} stopped at step {bad.get("stopped_at")} because step {bad.get("step")} was '
        f'non-finite under this same config; rerunning it would reach the same step again. '
        f'Change the config (e.g. a lower --config.train.lr, --config.train.grad_clip_norm=1.0) '
        f'and pass --config.{OVERRIDE}=True to resume from the newest finite checkpoint '
        f'(step {bad.get("checkpoint")}), pass --config.{OVERRIDE}=True alone to retry as is, '
        'or use a new --workdir.')
  if digest is not None:
    check_backbone(workdir, config, digest)  # whatever the override
  if allow or not has_state(workdir):
    return
  if changed:
    lines = [f'  {k}: {_show(o)} (recorded) -> {_show(n)} (now)' for k, (o, n) in changed.items()]
    raise WorkdirError(
        f'{workdir} holds a run of another config ({workdir}/{RUN_FILE}); differing keys:\n'
        + '\n'.join(lines) + '\nRerunning would resume (or return) that run, not this config. '
        + fix)


def check_backbone(workdir: str, config: ml_collections.ConfigDict, digest: str) -> None:
  """The backbone half of `check`, once the weights are loaded (the config half ran before any
  work): WorkdirError when the workdir's run was trained on other weights, also under
  `train.allow_config_change`: that covers config keys, not the weights, since continuing would
  report one backbone's results (and train its prompts) as another's."""
  run = read_run(workdir)
  if run is None or not has_state(workdir):
    return
  old = run.get('backbone_digest')
  if old and old != digest:
    raise WorkdirError(
        f'{workdir} was trained on backbone {old[:16]}... ({run.get("backbone_checkpoint")!r}) '
        f'but the weights now loaded ({config.init.checkpoint!r}) are {digest[:16]}...: other '
        f'weights, which --config.{OVERRIDE} does not cover. Point --config.init.checkpoint at '
        'the original file, or use a new --workdir for these weights.')


def record(workdir: str, config: ml_collections.ConfigDict, digest: str) -> None:
  """Writes wd/run.json for this config and backbone (call after `check` passed). A change from
  the recorded run is appended to 'changes'; a recorded non-finite stop is cleared."""
  run = read_run(workdir) or {'created': _now()}
  new = config_dict(config)
  if 'config' in run and has_state(workdir):
    change = {k: list(v) for k, v in diff(run['config'], new).items()}
    if run.get('backbone_digest') not in (None, digest):
      change['backbone_digest'] = [run['backbone_digest'], digest]
    if change:
      logging.warning('%s: continuing its run under a changed config (%s): %s', workdir, OVERRIDE,
                      change)
      run.setdefault('changes', []).append({'time': _now(), 'keys': change})
  run.pop('nonfinite', None)
  run.update(config=new, backbone_digest=digest, backbone_checkpoint=config.init.checkpoint)
  _write_text(epath.Path(workdir) / RUN_FILE, json.dumps(run, indent=1))


def mark_nonfinite(workdir: str, info: dict[str, Any]) -> None:
  """Records in run.json that training stopped on a non-finite step (`check` then refuses an
  unchanged rerun)."""
  run = read_run(workdir) or {}
  run['nonfinite'] = dict(info, time=_now())
  _write_text(epath.Path(workdir) / RUN_FILE, json.dumps(run, indent=1))


# ---------------------------------------------------------------- the writer lock


def _proc_start(pid: int) -> str | None:
  """The process's start time in clock ticks since boot (Linux /proc), or None."""
  try:
    with open(f'/proc/{pid}/stat') as f:
      return f.read().rsplit(')', 1)[1].split()[19]
  except (OSError, IndexError):
    return None


def _alive(info: dict[str, Any]) -> bool | None:
  """Whether the lock's process runs: True / False on this host, None on another host."""
  if info.get('host') != socket.gethostname():
    return None
  pid = int(info.get('pid', -1))
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    pass
  except (OverflowError, ValueError):
    return False
  start = _proc_start(pid)
  return not (start and info.get('proc_start') and start != info['proc_start'])


def _read_lock(path: str) -> dict[str, Any] | None:
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    return None
  except (OSError, ValueError):
    return {}  # being written, or a crash right after creating it


def _take(path: str, me: dict[str, Any]) -> bool:
  try:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
  except FileExistsError:
    return False
  with os.fdopen(fd, 'w') as f:
    json.dump(me, f)
  return True


@contextlib.contextmanager
def lock(workdir: str, *, wait_unreadable_s: float = 5.0) -> Iterator[None]:
  """Holds wd/writer.lock while the block runs; raises WorkdirError when a live process holds it."""
  global _warned_remote_lock
  if '://' in workdir:
    if not _warned_remote_lock:
      logging.warning('no writer lock on %s: remote file systems (gs://) offer no atomic '
                      'create-if-absent through tf.io.gfile; make sure one process writes it',
                      workdir)
      _warned_remote_lock = True
    yield
    return
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_FILE)
  me = {'pid': os.getpid(), 'host': socket.gethostname(), 'started': _now(),
        'proc_start': _proc_start(os.getpid())}
  deadline = time.time() + wait_unreadable_s
  while not _take(path, me):
    other = _read_lock(path)
    if other is None:
      continue  # released meanwhile
    if not other and time.time() < deadline:
      time.sleep(0.2)  # created but not yet written
      continue
    alive = _alive(other) if other else False
    if alive is False:
      logging.warning('taking over the stale lock %s (%s): its process is gone', path, other)
      if _read_lock(path) == other:
        os.remove(path)
      continue
    gone = ('' if alive else f' That host cannot be checked from here: if the process is gone '
            f'(e.g. a preempted VM), delete {path}.')
    raise WorkdirError(
        f'{workdir} is being written by pid {other.get("pid")} on {other.get("host")} since '
        f'{other.get("started")} ({path}). Two processes on one workdir overwrite each other\'s '
        f'checkpoints and results: wait for it, stop it, or use another --workdir.{gone}')
  try:
    yield
  finally:
    if _read_lock(path) == me:
      os.remove(path)


# ---------------------------------------------------------------- cache keys


def file_digest(path: str, chunk: int = 1 << 24) -> str:
  """sha256 of a file's bytes (local or gs://), streamed."""
  h = hashlib.sha256()
  with epath.Path(path).open('rb') as f:
    while block := f.read(chunk):
      h.update(block)
  return h.hexdigest()


def _get(d: dict[str, Any], dotted: str) -> Any:
  for part in dotted.split('.'):
    if not isinstance(d, dict) or part not in d:
      raise KeyError(f'config has no key {dotted!r}')
    d = d[part]
  return d


def inputs_key(config: ml_collections.ConfigDict, keys: Sequence[str], digest: str,
               files: Sequence[str] = ()) -> tuple[str, dict[str, Any]]:
  """(sha256 hex, the inputs it hashes) of a derived value: the values of the dotted config `keys`
  (a section name takes the whole section), the sha256 of each file named by the dotted keys in
  `files` ('' when unset) and the backbone `digest`."""
  cfg = config_dict(config)
  inputs = {'config': {k: _get(cfg, k) for k in keys},
            'files': {k: file_digest(_get(cfg, k)) if _get(cfg, k) else '' for k in files},
            'backbone': digest}
  return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest(), inputs


# ---------------------------------------------------------------- strict JSON


def strict(value: Any, where: str = '') -> tuple[Any, list[str]]:
  """(value with non-finite floats as None and numpy scalars as python, paths of those Nones)."""
  nulls: list[str] = []

  def clean(x: Any, at: str) -> Any:
    if isinstance(x, dict):
      return {k: clean(v, f'{at}/{k}') for k, v in x.items()}
    if isinstance(x, (list, tuple)):
      return [clean(v, f'{at}/{i}') for i, v in enumerate(x)]
    if isinstance(x, np.generic):
      x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
      nulls.append(at)
      return None
    return x

  return clean(value, where), nulls


def write_json(path: str, value: Any) -> list[str]:
  """Writes `value` as strict JSON (no NaN / Infinity, which most JSON readers reject): a
  non-finite float is written as null and its path listed under 'nonfinite_as_null' (dicts);
  returns those paths."""
  value, nulls = strict(value)
  if nulls and isinstance(value, dict):
    value['nonfinite_as_null'] = nulls
    logging.warning('%s: non-finite values written as null: %s', path, nulls)
  _write_text(epath.Path(path), json.dumps(value, indent=1, allow_nan=False))
  return nulls
