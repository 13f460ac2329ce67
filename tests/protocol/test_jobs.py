"""--dry_run --jobs_file: one job per line that runs from any directory (absolute config, weights
and data paths, sys.executable), shlex-quoted with readable tuple values, weights checked."""

import os
import shlex
import sys

import pytest

from prompt_jax.protocol import jobs
from prompt_jax.protocol import sweep


def _sweep(tmp_path, *extra):
  return sweep.main(['--config=configs/vpt_vtab.py', '--tasks=dtd,svhn', '--seeds=3,4',
                     f'--workdir={tmp_path / "sw"}', '--compilation_cache=', '--search=vpt',
                     '--lrs=0.5,0.1', '--wds=0.001,0', *extra])


def test_jobs_file_lines_run_from_anywhere(tmp_path, monkeypatch):
  (tmp_path / 'w.npz').write_bytes(b'')
  (tmp_path / 'data').mkdir()
  monkeypatch.chdir(tmp_path)
  f = tmp_path / 'jobs.txt'
  assert _sweep(tmp_path, '--dry_run', f'--jobs_file={f}', '--config.init.checkpoint=w.npz',
                '--config.data.data_dir=data') == 0
  lines = f.read_text().splitlines()
  assert len(lines) == 8  # 2 tasks x 4 trials (the final runs wait for the search)
  for line in lines:
    argv = shlex.split(line)
    assert argv[:3] == [sys.executable, '-m', 'prompt_jax.main']
    opts = dict(a.split('=', 1) for a in argv[3:])
    assert os.path.isfile(opts['--config'].split(':')[0])
    assert os.path.isabs(opts['--config']) and os.path.isabs(opts['--workdir'])
    assert opts['--config.init.checkpoint'] == str(tmp_path / 'w.npz')
    assert opts['--config.data.data_dir'] == str(tmp_path / 'data')
    assert opts['--config.data.eval_splits'] == '("val200",)'
    assert '\'"\'"\'' not in line  # no '"'"' quoting
  # a missing weights file is an error before any job exists
  with pytest.raises(FileNotFoundError, match='missing.npz'):
    jobs.job_line("python -m prompt_jax.main --config=configs/vpt_vtab.py "
                  "--config.init.checkpoint=missing.npz")
  with pytest.raises(SystemExit):  # --jobs_file needs --dry_run
    _sweep(tmp_path, f'--jobs_file={f}')


def test_tuple_values_keep_their_meaning():
  import ast
  for text in ("('val200',)", "('val200', 'test')", "['a', 1]", '(1, 2)', 'abc', "('a\"b',)"):
    assert ast.literal_eval(jobs._value(text)) == ast.literal_eval(text) if text != 'abc' else (
        jobs._value(text) == 'abc')


def test_sweep_console_is_as_quiet_as_mains(tmp_path):
  """Other libraries' INFO records (clu's metric lines) are dropped, prompt_jax's and warnings
  pass (the sweep installs console.py's filter; --verbose keeps everything)."""
  import logging
  from prompt_jax.util import console
  sweep._show_trainer_log()
  absl_logger = logging.getLogger('absl')
  rec = lambda path, level: logging.LogRecord('absl', level, path, 1, 'm', (), None)
  try:
    assert not absl_logger.filter(rec('/x/clu/metric_writers/logging_writer.py', logging.INFO))
    assert absl_logger.filter(rec('/x/clu/metric_writers/logging_writer.py', logging.WARNING))
    assert absl_logger.filter(rec(os.path.join(console.PACKAGE_DIR, 'train.py'), logging.INFO))
  finally:
    for f in [f for f in absl_logger.filters if isinstance(f, console._OwnInfoOnly)]:
      absl_logger.removeFilter(f)
