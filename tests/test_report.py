"""prompt_jax.report: results.json -> table with group means, CSV/markdown, bar chart."""

import json

import pytest

from prompt_jax import report
from prompt_jax.data import tasks
from prompt_jax.data import vtab


def _write(tmp_path, name, **r):
  d = tmp_path / name
  d.mkdir()
  (d / 'results.json').write_text(json.dumps(r))
  return str(d)


def test_report_known_answer(tmp_path, capsys):
  dirs = []
  for t in vtab.TASKS:
    acc = {'natural': 0.5, 'specialized': 0.8, 'structured': 0.2}[
        next(g for g, ts in tasks.GROUPS.items() if t in ts)]
    dirs.append(_write(tmp_path, f'vpt_{t}', task=t, method='vpt', val200=0.0, test=acc))
  dirs.append(_write(tmp_path, 'lin_cifar', task='cifar', method='linear', test=0.25))
  dirs.append(_write(tmp_path, 'lin_cifar_s2', task='cifar100', method='linear', test=0.35))
  out = tmp_path / 't.csv'
  assert report.main([f'--workdirs={",".join(dirs)}', f'--out={out}',
                      f'--png={tmp_path / "b.png"}']) == 0
  lines = out.read_text().splitlines()
  header = lines[0].split(',')
  assert header[0] == 'method' and header[-4:] == ['natural', 'specialized', 'structured', 'mean']
  rows = {l.split(',')[0]: dict(zip(header, l.split(','))) for l in lines[1:]}
  assert rows['vpt']['mean'] == f'{100 * 1.5 / 3:.2f}' and rows['vpt']['natural'] == '50.00'
  assert rows['linear']['cifar100'] == '30.00' and rows['linear']['mean'] == ''
  assert (tmp_path / 'b.png').stat().st_size > 0
  assert '| method |' in report.markdown(*report.table_rows(report.load_results(dirs[:2])))
  capsys.readouterr()


def test_missing_metric(tmp_path):
  d = _write(tmp_path, 'r', task='dtd', method='vpt', val200=0.5)
  with pytest.raises(KeyError, match='test'):
    report.load_results([d])
