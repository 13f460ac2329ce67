"""Console helpers: the quiet-mode log filter, the outputs block, the epoch progress hook."""

import io
import logging
import os

import pytest

from prompt_jax.util import console
from prompt_jax.util import progress


def _record(pathname, level=logging.INFO):
  return logging.LogRecord('x', level, pathname, 1, 'msg', None, None)


def test_quiet_filter_keeps_own_info_and_every_warning():
  f = console._OwnInfoOnly()
  assert f.filter(_record(os.path.join(console.PACKAGE_DIR, 'train.py')))
  assert not f.filter(_record('/site-packages/orbax/checkpoint/atomicity.py'))
  assert f.filter(_record('/site-packages/orbax/checkpoint/atomicity.py', logging.WARNING))


def test_outputs_block_names_results_tensorboard_and_tuned(tmp_path):
  run = tmp_path / 'vpt'
  (run / 'tuned' / 'params').mkdir(parents=True)
  (run / 'checkpoints' / '5').mkdir(parents=True)
  (run / 'results.json').write_text('{}')
  (run / 'events.out.tfevents.1.host').write_text('')
  block = console.outputs(str(tmp_path))
  assert str(run / 'results.json') in block
  assert f'tensorboard --logdir={tmp_path}' in block
  assert str(run / 'tuned') in block
  assert 'checkpoints' not in block
  assert '(none written)' in console.outputs(str(tmp_path / 'vpt' / 'checkpoints'))


def test_epoch_bars_one_bar_per_epoch_counting_images(monkeypatch):
  monkeypatch.setenv(progress.ENV, '1')
  err = io.StringIO()
  monkeypatch.setattr('sys.stderr', err)
  bars = progress.EpochBars(total_steps=7, steps_per_epoch=3, batch_size=4, name='run')
  for step in range(3, 8):  # resumed after step 2: epoch 1 starts at 2/3 done
    bars(step)
  text = err.getvalue()
  for e in (1, 2, 3):
    assert f'run epoch {e}/3' in text
  assert '8/12' in text  # resumed 2 steps into epoch 1
  assert '0/4 ' in text and 'img/s' in text  # the last epoch has 1 step
  assert bars._bar is None  # closed at the last step


@pytest.mark.parametrize('value,expected', [('1', True), ('0', False)])
def test_progress_env_forces_bars(monkeypatch, value, expected):
  monkeypatch.setenv(progress.ENV, value)
  assert progress.enabled() is expected
