"""Colab notebooks: run headless on CPU with SMOKE=1 (offline digits demo); outputs stripped."""

import glob
import os

import nbformat
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, 'colab', '*.ipynb')))


@pytest.mark.parametrize('path', NOTEBOOKS, ids=os.path.basename)
def test_outputs_stripped(path):
  nb = nbformat.read(path, as_version=4)
  for cell in nb.cells:
    if cell.cell_type == 'code':
      assert not cell.get('outputs'), f'{path}: code cell has outputs (strip them first)'
      assert cell.get('execution_count') is None, f'{path}: code cell has an execution_count'


@pytest.mark.parametrize('path', NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs_in_smoke_mode(path, tmp_path, monkeypatch):
  from nbclient import NotebookClient
  monkeypatch.setenv('SMOKE', '1')
  monkeypatch.setenv('MPLBACKEND', 'Agg')
  monkeypatch.setenv('SMOKE_WORKDIR', str(tmp_path))
  nb = nbformat.read(path, as_version=4)
  NotebookClient(nb, timeout=300, kernel_name='python3',
                 resources={'metadata': {'path': os.path.join(ROOT, 'colab')}}).execute()


def test_there_are_notebooks():
  assert NOTEBOOKS
