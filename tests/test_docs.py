"""Checks of the docs content that need no Quarto: nbdev's processing, outputs, math, docstrings.

The math check needs Node.js and the `katex` npm package (NODE_PATH may point at its
node_modules). Without them it skips, unless CIFAR_NN_REQUIRE_DOCS=1 (CI) makes that a failure.
"""
import importlib, inspect, json, os, re, shutil, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / 'nbs'
NOTEBOOKS = sorted(p for p in NBS.glob('*.ipynb') if not p.name.startswith(('_', '.')))


def cells(path, kind):
    return [c for c in json.loads(path.read_text())['cells'] if c['cell_type'] == kind]


def source(cell): return ''.join(cell['source']) if isinstance(cell['source'], list) else cell['source']


@pytest.fixture(scope='module')
def processed(tmp_path_factory):
    "nbdev's docs processing of every notebook (what Quarto would render), in `_proc/`."
    code = 'from nbdev.serve import proc_nbs; print(proc_nbs(force=True))'
    r = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, f'nbdev processing failed:\n{r.stdout}\n{r.stderr}'
    return Path(r.stdout.strip().splitlines()[-1])


def test_every_notebook_is_processed(processed):
    assert sorted(p.name for p in processed.glob('*.ipynb')) == [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: p.name)
def test_no_error_or_warning_on_the_page(processed, nb):
    page = processed / nb.name
    for cell in cells(page, 'code'):
        for out in cell.get('outputs', []):
            where = f'{nb.name}, cell starting {source(cell)[:60]!r}'
            assert out['output_type'] != 'error', f'{where}: error output {out.get("ename")}'
            if out['output_type'] == 'stream':
                text = ''.join(out['text'])
                assert out['name'] != 'stderr' or not re.search(r'Warning|Error|Traceback', text), \
                    f'{where}: {text[:300]}'


@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: p.name)
def test_opens_with_title_and_summary(nb):
    first = source(cells(nb, 'markdown')[0]).splitlines()
    assert first[0].startswith('# ') and any(l.startswith('> ') for l in first[1:4]), (nb.name, first[:4])


_CODE = re.compile(r'```.*?```|`[^`\n]*`', re.S)
_DISPLAY = re.compile(r'\$\$(.+?)\$\$', re.S)
_INLINE = re.compile(r'(?<![\\$])\$(?!\$)(.+?)(?<![\\$])\$(?!\$)', re.S)


def math_in(nb):
    "Every TeX expression in the markdown cells of `nb`: (where, tex, display)."
    found = []
    for i, cell in enumerate(cells(nb, 'markdown')):
        text = _CODE.sub('', source(cell))
        for m in _DISPLAY.finditer(text): found.append((f'{nb.name}, markdown cell {i}', m.group(1), True))
        text = _DISPLAY.sub('', text)
        for m in _INLINE.finditer(text): found.append((f'{nb.name}, markdown cell {i}', m.group(1), False))
    return found


def test_math_finder(tmp_path):
    fake = {'cells': [{'cell_type': 'markdown', 'source': 'a $x^2$ and `$y$` then\n$$\\frac{1}{2}$$ costs \\$5'}]}
    path = tmp_path / 'fake.ipynb'
    path.write_text(json.dumps(fake))
    assert [(t, d) for _, t, d in math_in(path)] == [('\\frac{1}{2}', True), ('x^2', False)]


@pytest.fixture(scope='module')
def katex_failures():
    "A function parsing [{where, tex, display}] with KaTeX under Node.js, returning the failures."
    node = shutil.which('node')
    probe = node and subprocess.run([node, '-e', 'require("katex")'], capture_output=True)
    if not node or probe.returncode:
        msg = 'Node.js with the katex package is needed (npm install katex; set NODE_PATH)'
        if os.environ.get('CIFAR_NN_REQUIRE_DOCS') == '1': pytest.fail(msg)
        pytest.skip(msg)
    def check(items):
        r = subprocess.run([node, str(ROOT / 'tests' / 'js' / 'katex_check.js')], check=True,
                           input=json.dumps(items), capture_output=True, text=True)
        return json.loads(r.stdout)
    return check


def test_katex_check_catches_bad_tex(katex_failures):
    items = [{'where': 'ok', 'tex': '\\frac{a}{b}', 'display': True},
             {'where': 'bad', 'tex': '\\frac{a}{b', 'display': False}]
    assert [f['where'] for f in katex_failures(items)] == ['bad']


def test_every_math_expression_parses_with_katex(katex_failures):
    items = [{'where': w, 'tex': t, 'display': d} for nb in NOTEBOOKS for w, t, d in math_in(nb)]
    assert items, 'no math found: the backprop page should have plenty'
    failures = katex_failures(items)
    assert not failures, '\n'.join(f"{f['where']}: {f['tex']!r}: {f['error']}" for f in failures)


@pytest.mark.parametrize('module', ['data', 'knn', 'mlp', 'cli'])
def test_public_functions_have_one_line_docstrings(module):
    mod = importlib.import_module(f'cifar_nn.{module}')
    for name in mod.__all__:
        obj = getattr(mod, name)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)): continue
        doc = inspect.getdoc(obj)
        assert doc, f'cifar_nn.{module}.{name} has no docstring'
        assert len(doc.strip().splitlines()) == 1, f'cifar_nn.{module}.{name}: docstring longer than a line'
