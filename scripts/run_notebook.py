"""Executes notebooks in place and stores their outputs, so the docs show a real run.

Runs every cell, `slow` ones included (they need the full dataset: set CIFAR_NN_DATA), from the
`nbs/` folder, then writes the notebook back through a temporary file. Stops at the first error and
leaves the notebook as it was. Usage: python scripts/run_notebook.py nbs/01_knn.ipynb [...]
"""
import os, sys, tempfile
from pathlib import Path

from execnb.nbio import read_nb, write_nb
from execnb.shell import CaptureShell


def run(path):
    path = Path(path).resolve()
    nb = read_nb(path)
    os.chdir(path.parent)
    shell = CaptureShell(path=path.parent)
    shell.run_all(nb, exc_stop=True)
    for cell in nb.cells:
        if cell.cell_type == 'code' and any(o.get('output_type') == 'error' for o in cell.get('outputs', [])):
            sys.exit(f'{path.name}: a cell raised an error; notebook left unchanged')
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix='.ipynb')
    os.close(fd)
    write_nb(nb, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    print(f'{path.name}: executed and saved')


if __name__ == '__main__':
    os.environ.setdefault('MPLBACKEND', 'module://matplotlib_inline.backend_inline')
    for p in [Path(a).resolve() for a in sys.argv[1:]]: run(p)
