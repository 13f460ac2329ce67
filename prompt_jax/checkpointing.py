"""Orbax checkpoints of the train state in `workdir/checkpoints` (state pytree + JSON meta)."""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


def manager(workdir: str, keep: int) -> ocp.CheckpointManager:
  """The run's checkpoint manager: items 'state' (pytree) and 'meta' (JSON), `keep` newest kept."""
  return ocp.CheckpointManager(
      os.path.abspath(os.path.join(workdir, 'checkpoints')),
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
      item_names=('state', 'meta'))


def save(mngr: ocp.CheckpointManager, state: Any, meta: dict[str, Any]) -> None:
  """Saves at `state['step']` unless that step is already the latest."""
  step = int(jax.device_get(state['step']))
  if mngr.latest_step() == step:
    return
  mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                          meta=ocp.args.JsonSave(meta)))


def restore(mngr: ocp.CheckpointManager, abstract_state: Any
            ) -> tuple[Any, dict[str, Any]] | None:
  """(state, meta) of the latest step, or None when there is no checkpoint."""
  step = mngr.latest_step()
  if step is None:
    return None
  got = mngr.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
  return got['state'], got['meta']


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
