"""Runs every notebook in `nbs/` through `nbdev_test`, one test each, so pytest reports them.

Cells flagged `slow` need the full dataset; they run only when CIFAR_NN_SLOW=1.
"""
import os, subprocess, sys
from pathlib import Path

import pytest

NBS = Path(__file__).resolve().parents[1] / 'nbs'
NOTEBOOKS = sorted(p.name for p in NBS.glob('*.ipynb') if not p.name.startswith(('_', '.')))


def test_notebooks_found():
    assert {'index.ipynb', '00_data.ipynb', '01_knn.ipynb'} <= set(NOTEBOOKS), NOTEBOOKS


@pytest.mark.parametrize('notebook', NOTEBOOKS)
def test_notebook(notebook):
    nbdev_test = Path(sys.executable).with_name('nbdev_test')
    cmd = [str(nbdev_test), '--path', str(NBS / notebook), '--n_workers', '0']
    if os.environ.get('CIFAR_NN_SLOW') == '1': cmd += ['--flags', 'slow']
    env = {**os.environ, 'MPLBACKEND': 'Agg'}
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=NBS.parent, env=env)
    assert run.returncode == 0, f'{notebook} failed under nbdev_test:\n{run.stdout}\n{run.stderr}'
