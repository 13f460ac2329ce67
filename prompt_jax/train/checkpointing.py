"""Orbax checkpoints of the train state in `workdir/checkpoints` (state pytree + JSON meta).

Only finite states are saved (`save` refuses others), each with a sha256 of its content in its
meta (`state_digest`) and a sha256 of the meta itself (`meta_digest`: eval history, last loss and
the state digest; a step without it is not used), and `restore` takes the newest step that
restores, matches its digests and is finite: a newer step that fails to read (a corrupt or
half-deleted file), whose bytes changed since it was saved (a flipped byte restores without error
otherwise) or holds a NaN / inf is skipped with a warning naming the step and why, and moved out
of the way to
`workdir/checkpoints_skipped/<step>` (deleted on remote workdirs) so that training can save that
step again. When no step restores, nothing is moved and `RestoreError` lists every step's reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp

from prompt_jax.train.errors import NonFiniteError, RestoreError
from prompt_jax.util import tree


DIGEST = 'state_digest'  # meta key: `state_digest` of the saved state
META_DIGEST = 'meta_digest'  # meta key: `meta_digest` of the rest of the meta (with DIGEST)


def _abspath(path: str) -> str:
  return path if '://' in path else os.path.abspath(path)


def manager(workdir: str, keep: int) -> ocp.CheckpointManager:
  """The run's checkpoint manager: items 'state' (pytree) and 'meta' (JSON), `keep` newest kept."""
  return ocp.CheckpointManager(
      _abspath(os.path.join(workdir, 'checkpoints')),
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
      item_names=('state', 'meta'))


def state_digest(state: Any) -> str:
  """sha256 of a train state's leaves (paths, dtypes, shapes, bytes; host copy), saved in each
  step's meta and checked on restore."""
  h = hashlib.sha256()
  for path, x in zip(tree.paths(state), jax.device_get(jax.tree_util.tree_leaves(state))):
    a = np.ascontiguousarray(x)
    h.update(f'{path}:{a.dtype.str}:{a.shape};'.encode())
    h.update(a.reshape(-1).view(np.uint8))
  return h.hexdigest()


def meta_digest(meta: dict[str, Any]) -> str:
  """sha256 of a step's JSON meta but its own META_DIGEST entry: the eval history and last loss
  (which decide the selected checkpoint and reported numbers) and the state's digest."""
  rest = {k: v for k, v in meta.items() if k != META_DIGEST}
  return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()


def _meta_problem(meta: dict[str, Any]) -> str | None:
  """Why a restored meta cannot be trusted, or None."""
  want = meta.get(META_DIGEST)
  if want is None:
    return ('it was saved without a digest of its metadata (eval history), so edits to it would '
            'go unnoticed')
  if meta_digest(meta) != want:
    return 'its metadata (eval history) does not match the digest saved with it (edited)'
  return None


def save(mngr: ocp.CheckpointManager, state: Any, meta: dict[str, Any]) -> None:
  """Saves at `state['step']` unless that step is already the latest; raises NonFiniteError (and
  saves nothing) when a float leaf of `state` is not finite."""
  step = int(jax.device_get(state['step']))
  if mngr.latest_step() == step:
    return
  bad = tree.nonfinite_paths(state)
  if bad:
    raise NonFiniteError(f'refusing to save the state of step {step}: non-finite values in {bad}')
  meta = {**meta, DIGEST: state_digest(state)}
  meta[META_DIGEST] = meta_digest(meta)
  mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                          meta=ocp.args.JsonSave(meta)))


def _set_aside(mngr: ocp.CheckpointManager, step: int) -> None:
  """Moves a skipped step out of the manager's directory (remote: deletes it)."""
  src = os.path.join(str(mngr.directory), str(step))
  if '://' in src:
    mngr.delete(step)
    return
  dst_dir = os.path.join(os.path.dirname(str(mngr.directory)), 'checkpoints_skipped')
  os.makedirs(dst_dir, exist_ok=True)
  dst = os.path.join(dst_dir, str(step))
  if os.path.exists(dst):
    dst = f'{dst}.{int(time.time())}'
  os.rename(src, dst)
  logging.warning('moved the skipped checkpoint step %d to %s', step, dst)


def keep_up_to(mngr: ocp.CheckpointManager, last_good: int) -> int | None:
  """Sets aside every step after `last_good` (`checkpoints_skipped/`, process 0 moves them);
  returns the newest step kept, or None."""
  mngr.wait_until_finished()
  later = [s for s in mngr.all_steps() if s > last_good]
  if later and jax.process_index() == 0:
    for step in later:
      _set_aside(mngr, step)
  if later:
    mngr.reload()
  kept = [s for s in mngr.all_steps() if s <= last_good]
  return max(kept) if kept else None


def restore(mngr: ocp.CheckpointManager, abstract_state: Any
            ) -> tuple[Any, dict[str, Any]] | None:
  """(state, meta) of the newest step that restores and is finite (newer steps are warned about
  and set aside), or None when there is no checkpoint. Raises RestoreError when none restores."""
  skipped: dict[int, str] = {}
  got = None
  for step in sorted(mngr.all_steps(), reverse=True):
    try:
      got = mngr.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
    except Exception as e:  # any failure to read the step: try an older one
      why = f'it does not restore ({type(e).__name__}: {str(e)[:300]})'
    else:
      bad = tree.nonfinite_paths(got['state'])
      meta_why = _meta_problem(got['meta'])
      want = got['meta'].pop(DIGEST, None)  # None: saved by a version without digests
      got['meta'].pop(META_DIGEST, None)
      if want is not None and state_digest(got['state']) != want:
        why = ('its bytes do not match the digest saved with it (a damaged or partly rewritten '
               'file)')
      elif bad:
        why = f'it holds non-finite values in {bad[:5]}'
      elif meta_why:
        why = meta_why
      else:
        break
      got = None
    logging.warning('checkpoint step %d in %s is skipped: %s', step, mngr.directory, why)
    skipped[step] = why
  if got is None and skipped:
    raise RestoreError(
        f'none of the checkpoints in {mngr.directory} restores:\n' + '\n'.join(
            f'  step {s}: {why}' for s, why in skipped.items())
        + '\nMove the checkpoints directory away to start this run afresh.')
  for step in skipped:
    _set_aside(mngr, step)
  if skipped:
    mngr.reload()
  return None if got is None else (got['state'], got['meta'])


def restore_state(workdir: str, like: Any = None) -> Any:
  """The train state of the latest checkpoint in `workdir` (`like`: a state giving the target
  shapes and shardings; None restores as saved)."""
  mngr = manager(workdir, 1)
  try:
    target = None if like is None else jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like)
    got = mngr.restore(mngr.latest_step(),
                       args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
  finally:
    mngr.close()
  return got['state']
