"""prompt_jax.checkpointing: only finite states are saved; restore takes the newest step that
restores and is finite, and says which steps it skipped."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from prompt_jax import checkpointing


def _state(step, value):
  return {'step': jnp.asarray(step, jnp.int32), 'trainable': {'w': jnp.full((4,), value)}}


def _abstract():
  return jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, _state(0, 0.0))


def _save_unchecked(mngr, state):
  """What an older version did: save without looking at the values."""
  mngr.save(int(state['step']), args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave({'history': []})))
  mngr.wait_until_finished()


def test_a_nonfinite_state_is_never_saved(tmp_path):
  mngr = checkpointing.manager(str(tmp_path), 3)
  with pytest.raises(checkpointing.NonFiniteError, match="step 2: non-finite values in "
                     "\\['trainable/w'\\]"):
    checkpointing.save(mngr, _state(2, np.nan), {'history': []})
  mngr.wait_until_finished()
  assert mngr.all_steps() == []
  mngr.close()


def test_restore_skips_nonfinite_and_unreadable_steps(tmp_path, caplog):
  mngr = checkpointing.manager(str(tmp_path), 5)
  checkpointing.save(mngr, _state(1, 1.0), {'history': [1]})
  mngr.wait_until_finished()
  _save_unchecked(mngr, _state(2, np.inf))
  _save_unchecked(mngr, _state(3, 3.0))
  mngr.close()
  shutil.rmtree(tmp_path / 'checkpoints' / '3' / 'state')  # a half-deleted step
  mngr = checkpointing.manager(str(tmp_path), 5)  # a new process
  state, meta = checkpointing.restore(mngr, _abstract())
  assert int(state['step']) == 1 and meta == {'history': [1]}
  assert 'step 3 in' in caplog.text and 'it does not restore (KeyError' in caplog.text
  assert 'step 2 in' in caplog.text and "non-finite values in ['trainable/w']" in caplog.text
  assert mngr.all_steps() == [1]
  assert sorted(os.listdir(tmp_path / 'checkpoints_skipped')) == ['2', '3']
  checkpointing.save(mngr, _state(2, 2.0), {'history': []})  # the step can be written again
  mngr.close()


def test_no_restorable_step_is_an_error_listing_each(tmp_path):
  mngr = checkpointing.manager(str(tmp_path), 5)
  checkpointing.save(mngr, _state(1, 1.0), {'history': []})
  mngr.close()
  shutil.rmtree(tmp_path / 'checkpoints' / '1' / 'state')
  mngr = checkpointing.manager(str(tmp_path), 5)
  with pytest.raises(checkpointing.RestoreError,
                     match='(?s)none of the checkpoints.*step 1: it does not restore'):
    checkpointing.restore(mngr, _abstract())
  assert mngr.all_steps() == [1]  # nothing moved: maybe only the file system failed
  mngr.close()
