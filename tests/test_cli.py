"""The `cifar-nn` command as a user meets it: help, exit codes, one-line errors, files written."""
import json, subprocess, sys
from pathlib import Path

import pytest

from cifar_nn import cli, knn, mlp

CLI = str(Path(sys.executable).with_name('cifar-nn'))


def run(*args, **kw):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=300, **kw)


@pytest.mark.parametrize('sub', [[], ['download'], ['knn'], ['mlp'], ['run']])
def test_help(sub):
    r = run(CLI, *sub, '--help')
    assert r.returncode == 0 and 'usage: cifar-nn' in r.stdout, r.stderr


def test_python_dash_m():
    r = run(sys.executable, '-m', 'cifar_nn', 'knn', '--help')
    assert r.returncode == 0 and '--k-max' in r.stdout


@pytest.mark.parametrize('args, word', [(['knn', '--split', '1.5'], '--split'),
                                        (['knn', '--split', 'x'], '--split'),
                                        (['knn', '--k-max', '0'], '--k-max'),
                                        (['mlp', '--recipe', 'fancy'], '--recipe'),
                                        (['mlp', '--learning-rate', '-1'], '--learning-rate')])
def test_bad_arguments_name_the_option(args, word):
    r = run(CLI, *args)
    assert r.returncode == 2 and word in r.stderr and 'Traceback' not in r.stderr


def test_k_max_above_training_size(tmp_path, capsys):
    assert cli.main(['knn', '--sample', '--k-max', '5000', '--out', str(tmp_path), '--quiet']) == 1
    err = capsys.readouterr().err.strip()
    assert '--k-max' in err and '5000' in err and len(err.splitlines()) == 1
    assert not (tmp_path / 'knn.json').exists()


def test_missing_data_without_network_is_one_clear_line(tmp_path):
    r = run(CLI, 'knn', '--data-dir', str(tmp_path), '--no-download', '--quiet')
    assert r.returncode == 1 and 'Traceback' not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    for hint in ('--data-dir', 'CIFAR_NN_DATA', 'cifar-nn download --archive', '--sample'):
        assert hint in lines[0], (hint, lines[0])


def test_failed_download_is_one_clear_line(tmp_path):
    "The data is fetched on first use; an unreachable server gives one line naming the URL."
    url = 'http://127.0.0.1:9/cifar-10-python.tar.gz'  # port 9 (discard): nothing listens
    r = run(CLI, 'download', '--data-dir', str(tmp_path), '--url', url, '--quiet')
    assert r.returncode == 1 and 'Traceback' not in r.stderr
    assert '127.0.0.1:9' in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not any(tmp_path.rglob('*.tar.gz*')), list(tmp_path.rglob('*'))


def test_download_bad_archive(tmp_path):
    archive = tmp_path / 'fake.tar.gz'
    archive.write_bytes(b'not an archive')
    r = run(CLI, 'download', '--data-dir', str(tmp_path / 'data'), '--archive', str(archive), '--quiet')
    assert r.returncode == 1 and 'Traceback' not in r.stderr and 'md5' in r.stderr.lower(), r.stderr


def test_knn_sample_writes_results(tmp_path):
    r = run(CLI, 'knn', '--sample', '--k-max', '4', '--out', str(tmp_path), '--quiet')
    assert r.returncode == 0, r.stderr
    assert r.stdout == ''  # --quiet
    report = json.loads((tmp_path / 'knn.json').read_text())
    assert report['k'] == [1, 2, 3, 4] and len(report['accuracy']) == 4
    assert report['n_train'] + report['n_test'] == 2000 and report['seed'] == 0
    assert 0.1 < report['best_accuracy'] < 0.5
    assert (tmp_path / 'knn.png').read_bytes()[:4] == b'\x89PNG'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['knn.json', 'knn.png']


def test_same_seed_same_results(tmp_path):
    for name in 'ab':
        assert cli.main(['knn', '--sample', '--k-max', '3', '--out', str(tmp_path / name), '--quiet']) == 0
    a, b = (json.loads((tmp_path / n / 'knn.json').read_text()) for n in 'ab')
    assert a['accuracy'] == b['accuracy']


def test_interrupted_knn_keeps_previous_results(tmp_path, monkeypatch, capsys):
    (tmp_path / 'knn.json').write_text('{"previous": true}')
    def interrupted(*a, **k): raise KeyboardInterrupt
    monkeypatch.setattr(knn, 'knn_sweep', interrupted)
    assert cli.main(['knn', '--sample', '--out', str(tmp_path), '--quiet']) == 130
    assert json.loads((tmp_path / 'knn.json').read_text()) == {'previous': True}
    assert 'interrupted' in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ['knn.json']


def test_interrupted_mlp_writes_what_was_learned(tmp_path, monkeypatch):
    real = mlp.run_recipe
    def stop_early(*a, **k):
        result = real(*a, **{**k, 'epochs': 1})
        return {**result, 'interrupted': True}
    monkeypatch.setattr(mlp, 'run_recipe', stop_early)
    status = cli.main(['mlp', '--sample', '--recipe', 'both', '--out', str(tmp_path), '--quiet'])
    assert status == 130
    report = json.loads((tmp_path / 'mlp.json').read_text())
    assert [r['recipe'] for r in report['results']] == ['tutorial']  # stopped before 'tuned'
    assert report['results'][0]['interrupted'] is True
    assert (tmp_path / 'mlp.png').stat().st_size > 0


def test_mlp_sample_overrides(tmp_path):
    status = cli.main(['mlp', '--sample', '--recipe', 'tuned', '--epochs', '2', '--d-h', '32',
                       '--out', str(tmp_path), '--quiet'])
    assert status == 0
    result = json.loads((tmp_path / 'mlp.json').read_text())['results'][0]
    assert result['settings']['d_h'] == 32 and result['settings']['epochs'] == 2
    assert len(result['train_accuracies']) == 2 and 0 <= result['test_accuracy'] <= 1


@pytest.mark.parametrize('args, word', [(['knn', '--seed', '-1'], '--seed'),
                                        (['mlp', '--learning-rate', 'nan'], '--learning-rate'),
                                        (['mlp', '--learning-rate', 'inf'], '--learning-rate'),
                                        (['mlp', '--epochs', '1.5'], '--epochs')])
def test_more_bad_arguments_stop_at_the_parser(args, word):
    r = run(CLI, *args, '--sample')
    assert r.returncode == 2 and word in r.stderr and 'Traceback' not in r.stderr, r.stderr


def test_unwritable_out_fails_before_any_work(tmp_path, capsys):
    blocker = tmp_path / 'afile'
    blocker.write_text('not a folder')
    for out in (blocker, blocker / 'sub'):
        # --no-download on an empty folder would fail too: the --out check must come first
        status = cli.main(['mlp', '--data-dir', str(tmp_path), '--no-download', '--out', str(out),
                           '--quiet'])
        err = capsys.readouterr().err.strip()
        assert status == 1 and len(err.splitlines()) == 1, err
        assert f'--out {out}' in err and 'choose another folder' in err, err
    assert blocker.read_text() == 'not a folder'


def test_data_dir_that_is_a_file(tmp_path, capsys):
    f = tmp_path / 'afile'
    f.write_text('x')
    assert cli.main(['knn', '--data-dir', str(f), '--out', str(tmp_path / 'o'), '--quiet']) == 1
    err = capsys.readouterr().err
    assert f'--data-dir {f} is a file' in err and 'Traceback' not in err


def test_sample_runs_do_not_overwrite_full_results(tmp_path):
    (tmp_path / 'results').mkdir()
    (tmp_path / 'results' / 'knn.json').write_text('{"full": true}')
    r = run(CLI, 'knn', '--sample', '--k-max', '2', '--quiet', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / 'results' / 'knn.json').read_text()) == {'full': True}
    assert json.loads((tmp_path / 'results' / 'sample' / 'knn.json').read_text())['k'] == [1, 2]


def test_failing_recipe_keeps_the_finished_one(tmp_path, monkeypatch, capsys):
    real = mlp.run_recipe
    def tuned_diverges(*a, recipe, **k):
        if recipe == 'tuned': raise ValueError('training diverged at epoch 1; try a smaller --learning-rate')
        return real(*a, recipe=recipe, **{**k, 'epochs': 1})
    monkeypatch.setattr(mlp, 'run_recipe', tuned_diverges)
    status = cli.main(['mlp', '--sample', '--out', str(tmp_path), '--quiet'])
    assert status == 1 and 'diverged' in capsys.readouterr().err
    report = json.loads((tmp_path / 'mlp.json').read_text())
    assert [r['recipe'] for r in report['results']] == ['tutorial']


def test_out_of_memory_is_one_line(tmp_path, monkeypatch, capsys):
    def too_big(*a, **k): raise MemoryError('Unable to allocate 229. GiB')
    monkeypatch.setattr(knn, 'knn_sweep', too_big)
    assert cli.main(['knn', '--sample', '--out', str(tmp_path), '--quiet']) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'not enough memory' in err and '--k-max' in err


def test_help_shows_recipe_defaults():
    r = run(CLI, 'mlp', '--help')
    assert 'tutorial 0.1' in r.stdout and 'full batch' in r.stdout, r.stdout


def test_results_record_no_machine_path(monkeypatch):
    "Results are shared and committed: they describe the data, not where it sat on one machine."
    from cifar_nn import data
    import numpy as np
    monkeypatch.setattr(data, 'find_cifar', lambda *a, **k: Path('/some/private/place'))
    monkeypatch.setattr(data, 'read_cifar', lambda *a, **k: (np.zeros((10, 3072), np.uint8),
                                                              np.arange(10) % 10))
    *_, source = cli.load_split('/some/private/place', 0.5, 0)
    assert source == 'CIFAR-10, all 10 images'
