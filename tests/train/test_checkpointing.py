"""prompt_jax.train.checkpointing: only finite states are saved; restore takes the newest step that
restores and is finite, and says which steps it skipped."""

import glob
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from prompt_jax.train import checkpointing


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


def test_a_flipped_byte_is_a_corrupt_step(tmp_path, caplog):
  # orbax restores a data file with one changed byte without an error.
  w = np.random.default_rng(0).normal(size=(1024,)).astype(np.float32)  # incompressible
  mngr = checkpointing.manager(str(tmp_path), 5)
  for step in (1, 2):
    checkpointing.save(mngr, {'step': jnp.asarray(step, jnp.int32), 'trainable': {'w': w * step}},
                       {'history': [step]})
  mngr.close()
  # The data file holding w (zstd-compressed by tensorstore): one flipped bit in the middle of
  # it decodes without an error to other values of w.
  path = max(glob.glob(str(tmp_path / 'checkpoints' / '2' / 'state' / '**' / 'd' / '*'),
                       recursive=True), key=os.path.getsize)
  with open(path, 'r+b') as f:
    blob = bytearray(f.read())
    blob[len(blob) // 2] ^= 0x01
    f.seek(0)
    f.write(blob)
  abstract = {'step': jax.ShapeDtypeStruct((), jnp.int32),
              'trainable': {'w': jax.ShapeDtypeStruct((1024,), jnp.float32)}}
  mngr = checkpointing.manager(str(tmp_path), 5)
  state, meta = checkpointing.restore(mngr, abstract)
  assert int(state['step']) == 1 and meta == {'history': [1]}
  np.testing.assert_array_equal(state['trainable']['w'], w)
  assert 'step 2 in' in caplog.text and 'do not match the digest saved with it' in caplog.text
  assert os.listdir(tmp_path / 'checkpoints_skipped') == ['2']
  mngr.close()


DISK_FULL = '''
import resource, signal, sys
import jax.numpy as jnp, numpy as np
from prompt_jax.train import checkpointing
w = np.random.default_rng(0).normal(size=(256 * 1024,)).astype(np.float32)  # 1 MiB
mngr = checkpointing.manager(sys.argv[1], 5)
checkpointing.save(mngr, {'step': jnp.asarray(1, jnp.int32), 'w': w}, {'history': [1]})
mngr.wait_until_finished()
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))  # "disk full"
try:
  checkpointing.save(mngr, {'step': jnp.asarray(2, jnp.int32), 'w': w * 2}, {'history': [2]})
  mngr.wait_until_finished()
except Exception as e:
  print('save failed:', type(e).__name__, 'File too large' in str(e))
else:
  print('saved')
'''


def test_disk_full_while_saving_fails_loudly_and_keeps_the_previous_step(tmp_path):
  # A write past `ulimit -f` (EFBIG, as ENOSPC would) during a checkpoint save.
  out = subprocess.run([sys.executable, '-c', DISK_FULL, str(tmp_path)], capture_output=True,
                       text=True, timeout=300)
  assert 'save failed: ValueError True' in out.stdout, out.stderr[-3000:]
  mngr = checkpointing.manager(str(tmp_path), 5)
  assert mngr.all_steps() == [1]  # the torn step 2 is only a *.orbax-checkpoint-tmp directory
  state, meta = checkpointing.restore(mngr, {'step': jax.ShapeDtypeStruct((), jnp.int32),
                                             'w': jax.ShapeDtypeStruct((256 * 1024,), jnp.float32)})
  assert int(state['step']) == 1 and meta == {'history': [1]}
  mngr.close()


def test_an_edited_eval_history_is_refused(tmp_path, caplog):
  mngr = checkpointing.manager(str(tmp_path), 5)
  for step in (1, 2):
    checkpointing.save(mngr, _state(step, float(step)), {'history': [{'val200': 0.1 * step}]})
  mngr.close()
  meta_file = tmp_path / 'checkpoints' / '2' / 'meta' / 'metadata'
  text = meta_file.read_text()
  assert '0.2' in text
  meta_file.write_text(text.replace('0.2', '0.9'))  # a better-looking validation score
  mngr = checkpointing.manager(str(tmp_path), 5)
  state, meta = checkpointing.restore(mngr, _abstract())
  assert int(state['step']) == 1 and meta == {'history': [{'val200': 0.1}]}
  assert 'step 2 in' in caplog.text and 'metadata (eval history) does not match' in caplog.text
  mngr.close()
