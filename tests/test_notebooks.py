"""Colab notebooks: run headless on CPU with SMOKE=1 (offline assets); every plotted series is
non-empty and finite; committed notebooks carry no outputs."""

import glob
import os

import nbformat
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, 'colab', '*.ipynb')))

# Appended to each notebook before it runs (MPLBACKEND=Agg keeps its figures open): every line,
# bar group and image of every figure holds data, all finite.
CHECK_FIGURES = '''
import matplotlib.pyplot as plt
import numpy as np
_figs = [plt.figure(n) for n in plt.get_fignums()]
assert _figs, 'the notebook drew no figure'
for _fig in _figs:
  for _ax in _fig.axes:
    _series = ([('line ' + str(l.get_label()), l.get_ydata()) for l in _ax.get_lines()]
               + [('bars ' + str(c.get_label()), [p.get_height() for p in c.patches])
                  for c in _ax.containers]
               + [('image', im.get_array()) for im in _ax.get_images()])
    assert _series, f'an axes of figure {_fig.number} has nothing drawn'
    for _name, _data in _series:
      _a = np.asarray(_data, float)
      assert _a.size and np.isfinite(_a).all(), f'{_name} in figure {_fig.number}: {_a}'
print('figures checked:', len(_figs))
'''


@pytest.mark.parametrize('path', NOTEBOOKS, ids=os.path.basename)
def test_outputs_stripped(path):
  nb = nbformat.read(path, as_version=4)
  for cell in nb.cells:
    if cell.cell_type == 'code':
      assert not cell.get('outputs'), f'{path}: code cell has outputs (strip them first)'
      assert cell.get('execution_count') is None, f'{path}: code cell has an execution_count'


@pytest.mark.slow
@pytest.mark.parametrize('path', NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs_in_smoke_mode_and_plots_data(path, tmp_path, monkeypatch):
  from nbclient import NotebookClient
  monkeypatch.setenv('SMOKE', '1')
  monkeypatch.setenv('MPLBACKEND', 'Agg')
  monkeypatch.setenv('SMOKE_WORKDIR', str(tmp_path))
  nb = nbformat.read(path, as_version=4)
  nb.cells.append(nbformat.v4.new_code_cell(CHECK_FIGURES))
  NotebookClient(nb, timeout=300, kernel_name='python3',
                 resources={'metadata': {'path': os.path.join(ROOT, 'colab')}}).execute()
  assert 'figures checked' in ''.join(o.get('text', '') for o in nb.cells[-1].outputs)


def test_there_are_notebooks():
  assert len(NOTEBOOKS) >= 2
