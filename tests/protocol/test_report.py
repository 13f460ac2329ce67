"""protocol.report: results.json found under any folder -> rows by (method, variant, config),
mean ± std over seeds, group means, non-VTAB tasks, CSV / markdown / PNG / JSON."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from prompt_jax.protocol import report
from prompt_jax.protocol import figure as report_figure
from prompt_jax.protocol import rows as rows_lib
from prompt_jax.data import tasks

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _write(root, rel, *, task, method='vpt', variant=None, seed=0, test=None, val=None,
           config=None, **extra):
  d = root / rel
  d.mkdir(parents=True)
  r = {'task': task, 'method': method, 'seed': seed, **extra}
  if variant:
    r['variant'] = variant
  final = {}
  if test is not None:
    r['test'] = final['test'] = test
  if val is not None:
    r['val200'] = final['val200'] = val
  r['final'] = final
  r['config'] = config if config is not None else {
      'seed': seed, 'data': {'task': task}, 'init': {'checkpoint': '/w/ViT-B_16.npz'},
      'vpt': {'num_prompts': 50}}
  (d / 'results.json').write_text(json.dumps(r))
  return d


def _group(t):
  return next(g for g, ts in tasks.GROUPS.items() if t in ts)


def test_known_answer_with_seeds_variants_and_groups(tmp_path, capsys):
  acc = {'natural': 0.5, 'specialized': 0.8, 'structured': 0.2}
  for t in tasks.VTAB_TASKS:
    for seed, delta in ((0, -0.01), (1, 0.01)):
      _write(tmp_path, f'sweep/{t}/seed{seed}', task=t, variant='vpt_deep', seed=seed,
             test=acc[_group(t)] + delta)
  # VPT-shallow on one task: its own row, not averaged into vpt_deep.
  _write(tmp_path, 'shallow/dtd', task='dtd', variant='vpt_shallow', test=0.9)
  # Linear probe on cifar (the vtab-1k folder name) with two seeds; an FGVC task and digits.
  _write(tmp_path, 'lin/a', task='cifar', method='linear', seed=0, test=0.25)
  _write(tmp_path, 'lin/b', task='cifar100', method='linear', seed=1, test=0.35)
  _write(tmp_path, 'lin/cub', task='cub', method='linear', test=0.6)
  _write(tmp_path, 'lin/digits', task='downstream', method='linear', test=0.7)
  # A search trial (val only) is found but has no test accuracy: left out of the table.
  _write(tmp_path, 'sweep/dtd/trial_lr1_wd0', task='dtd', variant='vpt_deep', val=0.3)
  out = tmp_path / 't.md'
  csv_path, png, js = tmp_path / 't.csv', tmp_path / 'b.png', tmp_path / 'all.json'
  assert report.main([f'--workdirs={tmp_path}', f'--out={out}', f'--csv={csv_path}',
                      f'--png={png}', f'--json={js}']) == 0
  lines = out.read_text().splitlines()
  header = [c.strip() for c in lines[0].strip('|').split('|')]
  rows = {}
  for line in lines[2:]:
    cells = [c.strip() for c in line.strip('|').split('|')]
    rows[cells[1]] = dict(zip(header, cells))
  assert header[:4] == ['method', 'variant', 'config', 'selection']
  vtab_cols = [t for t in tasks.VTAB_TASKS]
  assert header[4:4 + 19] == vtab_cols
  assert header[23:] == ['cub', 'downstream', 'natural', 'specialized', 'structured', 'mean']
  deep = rows['vpt_deep']
  assert deep['config'] == 'ViT-B_16.npz' and deep['selection'] == 'final epoch'
  assert deep['dtd'] == '50.00 ± 1.00' and deep['natural'] == '50.00 ± 1.00'
  assert deep['mean'] == f'{100 * 1.5 / 3:.2f} ± 1.00'
  assert rows['vpt_shallow']['dtd'] == '90.00' and rows['vpt_shallow']['mean'] == ''
  lin = rows['linear']
  assert lin['cifar100'] == '30.00 ± 5.00' and lin['cub'] == '60.00'
  assert lin['downstream'] == '70.00' and lin['mean'] == ''
  long = csv_path.read_text().splitlines()
  assert long[0] == 'method,variant,config,selection,column,mean,std,n'
  assert 'vpt,vpt_deep,ViT-B_16.npz,final epoch,dtd,50.0000,1.0000,2' in long
  assert png.stat().st_size > 0
  everything = json.loads(js.read_text())
  assert len(everything['runs']) == 2 * 19 + 1 + 4 + 1
  assert 'left out' in capsys.readouterr().err


def test_runs_differing_in_a_config_field_get_their_own_rows(tmp_path):
  for p in (50, 100):
    cfg = {'seed': 0, 'data': {'task': 'dtd'}, 'init': {'checkpoint': 'ViT-B_16.npz'},
           'vpt': {'num_prompts': p}}
    _write(tmp_path, f'p{p}', task='dtd', variant='vpt_deep', test=p / 200, config=cfg)
  rows = report.build_rows(report.load_runs([str(tmp_path)]))
  assert sorted((r.config, r.cells['dtd'].mean) for r in rows) == [
      ('ViT-B_16.npz; vpt.num_prompts=100', 0.5), ('ViT-B_16.npz; vpt.num_prompts=50', 0.25)]
  # A different backbone is a different row too.
  _write(tmp_path, 'mae', task='dtd', method='spt', variant='spt_deep_kmeans', test=0.4,
         config={'seed': 0, 'init': {'checkpoint': '/x/mae_pretrain_vit_base.pth'}})
  rows = report.build_rows(report.load_runs([str(tmp_path)]))
  assert {r.config for r in rows if r.method == 'spt'} == {'mae_pretrain_vit_base.pth'}


def test_metrics_are_labelled(tmp_path):
  d = _write(tmp_path, 'ship', task='dtd', method='ship', test=0.7, val=0.6,
             val_selected={'epoch': 3, 'val200': 0.65, 'test': 0.68},
             best_epoch_selected_on_test={'epoch': 5, 'test': 0.75})
  run = report.load_run(str(d / 'results.json'))
  assert report.metric_value(run, 'final') == 0.7
  assert report.metric_value(run, 'val_selected') == 0.68
  assert report.metric_value(run, 'test_selected') == 0.75
  rows = report.build_rows([run], ('final', 'val_selected', 'test_selected'))
  assert [r.selection for r in rows] == [report.METRICS[m] for m in
                                         ('final', 'val_selected', 'test_selected')]
  assert report.METRICS['test_selected'] == 'test-selected epoch (as released)'


def test_nothing_found_is_a_clear_message(tmp_path, capsys):
  (tmp_path / 'empty').mkdir()
  assert report.main([f'--workdirs={tmp_path / "empty"}']) == 1
  err = capsys.readouterr().err
  assert 'no results.json under' in err and 'python -m prompt_jax.main' in err
  with pytest.raises(report.NoResultsError, match='no such file'):
    report.find_results([str(tmp_path / 'missing')])


def test_only_trials_is_a_clear_message(tmp_path, capsys):
  _write(tmp_path, 'trial', task='dtd', val=0.3)
  assert report.main([f'--workdirs={tmp_path}']) == 1
  assert 'none of the 1 runs has a final accuracy' in capsys.readouterr().err


def test_no_blank_chart(tmp_path):
  run = report.load_run(str(_write(tmp_path, 'r', task='cub', test=0.5) / 'results.json'))
  assert report_figure.bar_chart([], str(tmp_path / 'none.png')) is False
  assert not (tmp_path / 'none.png').exists()
  # FGVC only: no VTAB group means, so the chart shows the tasks instead of empty groups.
  rows = report.build_rows([run])
  assert report.group_columns(rows) == []
  assert report_figure.bar_chart(rows, str(tmp_path / 'cub.png'))


def test_old_results_without_config_or_variant(tmp_path):
  d = tmp_path / 'old'
  d.mkdir()
  (d / 'results.json').write_text(json.dumps({'task': 'dtd', 'method': 'vpt', 'test': 0.5}))
  rows = report.build_rows(report.load_runs([str(tmp_path)]))
  assert (rows[0].variant, rows[0].config, rows[0].cells['dtd'].mean) == (
      'vpt', 'unknown config', 0.5)


def test_report_does_not_import_tensorflow():
  code = ('import sys; from prompt_jax.protocol import report; '
          'assert "tensorflow" not in sys.modules, "tensorflow imported"; '
          'assert "jax" not in sys.modules, "jax imported"')
  out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]


def test_variant_labels():
  """The labels results.json records (methods' `variant`, via `Method.label`)."""
  from prompt_jax.util import config_files
  from prompt_jax.methods import base
  def label(spec, **over):
    c = config_files.load(spec)
    c.unlock()
    for k, v in over.items():
      a, b = k.split('__')
      c[a][b] = v
    return base.get(c.method).label(c)
  assert label('configs/vpt_vtab.py:task=dtd') == 'vpt_deep'
  assert label('configs/vpt_vtab.py:task=dtd,deep=False') == 'vpt_shallow'
  assert label('configs/spt_vtab.py:task=dtd') == 'spt_deep_kmeans'
  assert label('configs/spt_vtab.py:task=dtd,deep=False',
               prompt_init__strategy='max_pooling') == 'spt_shallow_max_pooling'
  assert label('configs/vpt_vtab.py:task=dtd', prompt_init__name='spt') == 'vpt_deep+spt_kmeans'
  assert label('configs/ship_vtab.py:task=dtd') == 'ship'
  assert label('configs/linear_vtab.py:task=dtd') == 'linear'


def _rows(task_list, variants, seeds, rng):
  out = []
  for i, v in enumerate(variants):
    by_task = {t: {s: float(np.clip(0.5 + 0.1 * i + rng.normal(0, 0.1), 0, 1))
                   for s in range(seeds)} for t in task_list}
    cells = {t: rows_lib.cell_of(x) for t, x in by_task.items()}
    cells.update(rows_lib.group_cells(by_task))
    out.append(report.Row('vpt', v, 'ViT-B_16.npz', 'final epoch', cells))
  return out


def canvas_has(fig, box) -> bool:
  c = fig.bbox
  return c.x0 <= box.x0 and box.x1 <= c.x1 and c.y0 <= box.y0 and box.y1 <= c.y1


def test_figure_is_readable(tmp_path):
  """19 tasks x 3 methods x 3 seeds: tick labels do not overlap, the legend is inside the canvas,
  Natural / Specialized / Structured sections and a group-mean panel; partial groups are marked;
  non-VTAB tasks are drawn too."""
  rng = np.random.default_rng(0)
  fig = report_figure.figure(_rows(tasks.VTAB_TASKS, ['linear', 'vpt_shallow', 'vpt_deep'], 3, rng))
  fig.canvas.draw()
  r = fig.canvas.get_renderer()
  ax, gx = fig.axes
  assert all(canvas_has(fig, t.get_window_extent(r)) for t in ax.get_xticklabels() + ax.texts)
  labels = ax.get_xticklabels()
  assert len(labels) == 19 and all(t.get_rotation() == 45 for t in labels)
  # neighbouring 45-degree labels are apart by more than a line of text, perpendicular to them
  xs = ax.transData.transform([(x, 0) for x in ax.get_xticks()])[:, 0]
  line = labels[0].get_fontsize() * fig.dpi / 72
  assert np.diff(xs).min() * np.sin(np.pi / 4) > 1.2 * line
  (legend,) = fig.legends
  assert canvas_has(fig, legend.get_window_extent(r))
  assert {t.get_text() for t in ax.texts} == {'Natural', 'Specialized', 'Structured'}
  assert [t.get_text() for t in gx.get_xticklabels()] == [
      'natural', 'specialized', 'structured', 'mean']
  assert len(ax.patches) == 3 * 19
  import matplotlib.pyplot as plt
  plt.close(fig)
  fig = report_figure.figure(_rows(['dtd', 'svhn', 'eurosat', 'downstream'], ['a', 'b'], 1, rng))
  ax, gx = fig.axes
  assert [t.get_text() for t in ax.texts] == ['Natural', 'Specialized', 'Other']
  assert [t.get_text() for t in gx.get_xticklabels()] == [
      'natural (2/7 tasks)', 'specialized (1/4 tasks)']
  plt.close(fig)


def test_table_marks_partial_groups_and_footnotes_config_and_selection(tmp_path):
  """A group mean over part of its group says so; config differences and a long selection text
  are footnote marks under the table, not column dumps."""
  for p in (10, 50):
    cfg = {'seed': 0, 'data': {'task': 'dtd'}, 'init': {'checkpoint': '/w/ViT-B_16.npz'},
           'vpt': {'num_prompts': p}}
    _write(tmp_path, f'p{p}', task='dtd', variant='vpt_deep', test=p / 100, config=cfg)
  runs = report.load_runs([str(tmp_path)])
  long = 'val-selected: lr x wd grid on train800 -> val200, best of 12 trials per task and seed'
  rows = report.build_rows(runs, ('final',))
  rows.append(dataclasses.replace(rows[-1], selection=long))
  header, body = report.table(rows)
  natural = header.index('natural')
  assert all(b[natural].endswith(' (1/7)') for b in body), body
  assert {b[2] for b in body} == {'ViT-B_16.npz [1]', 'ViT-B_16.npz [2]'}
  assert body[-1][3] == 'val-selected [3]' and body[0][3] == 'final epoch'
  notes = report.footnotes(rows)
  assert notes == ['[1] vpt.num_prompts=10', '[2] vpt.num_prompts=50', f'[3] {long}'], notes
  text = report.write(rows, runs)
  assert text.rstrip().endswith(f'[3] {long}')
