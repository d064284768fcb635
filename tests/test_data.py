"""Bad input, security and real-data checks for `cifar_nn.data`.

Everything here runs on small synthetic batches and archives built in the test, and on an HTTP
server the test starts on 127.0.0.1; only the tests using the `cifar_dir` fixture need the real
dataset.
"""
import hashlib, http.server, io, os, pickle, tarfile, threading, tracemalloc, warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from cifar_nn import data as cd
from cifar_nn.data import (BATCHES_DIR, LABEL_NAMES, DownloadError, data_home, download_cifar,
                           find_cifar, load_sample, read_cifar, read_cifar_batch, read_label_names,
                           split_dataset)

ROWS = 20  # images per synthetic batch
BATCH_NAMES = [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']


# ---------------------------------------------------------------- building synthetic files

def batch_bytes(data, labels, protocol=2, extra=None):
    "A pickled batch in the CIFAR-10 layout (bytes keys), written by this Python."
    batch = {b'batch_label': b'synthetic', b'labels': labels, b'data': data,
             b'filenames': [b'x.png'] * len(labels), **(extra or {})}
    return pickle.dumps(batch, protocol=protocol)


def random_batch(seed, rows=ROWS):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (rows, 3072), dtype=np.uint8),
            [int(l) for l in rng.integers(0, 10, rows)])


META = pickle.dumps({b'label_names': [n.encode() for n in LABEL_NAMES], b'num_vis': 3072}, 2)


def members(seed=0):
    "File name -> bytes for a complete small batches folder."
    files = {name: batch_bytes(*random_batch(seed + i)) for i, name in enumerate(BATCH_NAMES)}
    return {**files, 'batches.meta': META}


def write_folder(folder, files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items(): (folder / name).write_bytes(content)
    return folder


def make_archive(path, files, extra=(), folder_entry=True):
    """A gzip tar of `files` under the batches folder; `extra` is a list of (position, TarInfo,
    bytes or None) inserted among the regular members. Returns the archive's md5."""
    entries = [(tarfile.TarInfo(f'{BATCHES_DIR}/{name}'), content)
               for name, content in files.items()]
    for position, info, content in extra: entries.insert(position, (info, content))
    with tarfile.open(path, 'w:gz') as tar:
        if folder_entry:
            folder = tarfile.TarInfo(BATCHES_DIR)
            folder.type, folder.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(folder)
        for info, content in entries:
            if content is not None: info.size = len(content)
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    return md5_of(path)


def md5_of(path): return hashlib.md5(Path(path).read_bytes()).hexdigest()


def snapshot(folder):
    "Every file under `folder` (hidden ones included) with its sha256."
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob('*')) if p.is_file() or p.is_symlink()}


@pytest.fixture
def archive(tmp_path):
    "A good small archive: (path, md5, files)."
    files = members()
    path = tmp_path / 'small.tar.gz'
    return SimpleNamespace(path=path, md5=make_archive(path, files), files=files)


@pytest.fixture
def good_home(tmp_path, archive):
    "A data folder holding a verified copy made from `archive`."
    home = tmp_path / 'home'
    download_cifar(home, archive=archive.path, md5=archive.md5)
    return home


@pytest.fixture(autouse=True)
def no_data_env(monkeypatch, tmp_path):
    "Keep the user's environment out of the tests that do not ask for it."
    monkeypatch.delenv('CIFAR_NN_DATA', raising=False)
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))


# ---------------------------------------------------------------- where the data lives

def test_data_home_order(monkeypatch, tmp_path):
    assert data_home(tmp_path / 'a') == tmp_path / 'a'
    assert data_home(tmp_path / 'a' / BATCHES_DIR) == tmp_path / 'a'
    assert data_home() == tmp_path / 'cache' / 'cifar_nn'
    monkeypatch.setenv('CIFAR_NN_DATA', str(tmp_path / 'env' / BATCHES_DIR))
    assert data_home() == tmp_path / 'env'
    assert data_home(tmp_path / 'arg') == tmp_path / 'arg'
    monkeypatch.delenv('CIFAR_NN_DATA')
    monkeypatch.setenv('XDG_CACHE_HOME', 'relative/ignored')
    assert data_home() == Path.home() / '.cache' / 'cifar_nn'
    monkeypatch.delenv('XDG_CACHE_HOME')
    assert data_home() == Path.home() / '.cache' / 'cifar_nn'
    assert data_home('~/x') == Path.home() / 'x'


# ---------------------------------------------------------------- reading batches

def test_read_batch_types_and_values(tmp_path):
    data, labels = random_batch(1)
    (tmp_path / 'b').write_bytes(batch_bytes(data, labels))
    got_data, got_labels = read_cifar_batch(tmp_path / 'b')
    assert got_data.dtype == np.float32 and got_data.shape == (ROWS, 3072)
    assert got_labels.dtype == np.int64 and got_labels.tolist() == labels
    np.testing.assert_array_equal(got_data, data)
    raw, _ = read_cifar_batch(tmp_path / 'b', dtype=np.uint8)
    assert raw.dtype == np.uint8 and raw.flags.writeable


def test_read_batch_labels_as_array_and_protocol_4(tmp_path):
    data, labels = random_batch(2)
    (tmp_path / 'b').write_bytes(batch_bytes(data, np.array(labels, dtype=np.uint8), protocol=4))
    assert read_cifar_batch(tmp_path / 'b')[1].tolist() == labels


def test_numpy_1_global_name_loads_without_warnings(tmp_path):
    "The original files name `numpy.core.multiarray`; loading them must not warn under numpy 2."
    content = batch_bytes(*random_batch(3))
    content = content.replace(b'numpy._core.multiarray', b'numpy.core.multiarray')
    assert b'numpy.core.multiarray' in content
    (tmp_path / 'b').write_bytes(content)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert read_cifar_batch(tmp_path / 'b')[0].shape == (ROWS, 3072)


@pytest.mark.parametrize('keep', [0, 1, 2, 50, 200, 1000, -1])
def test_truncated_batch(tmp_path, keep):
    content = batch_bytes(*random_batch(4))
    path = tmp_path / 'data_batch_1'
    path.write_bytes(content[:keep] if keep >= 0 else content[:-1])
    with pytest.raises(ValueError, match='data_batch_1'):
        read_cifar_batch(path)


@pytest.mark.parametrize('content', [b'hello, this is text\n', b'\x89PNG\r\n\x1a\n' + bytes(100),
                                     os.urandom(3000), b'\x80\x02}q\x00.garbage'])
def test_non_pickle_file(tmp_path, content):
    path = tmp_path / 'test_batch'
    path.write_bytes(content)
    with pytest.raises(ValueError, match='test_batch'):
        read_cifar_batch(path)


class Opens:
    "Loading this with plain pickle would create the file `path`."
    def __init__(self, path): self.path = str(path)
    def __reduce__(self): return open, (self.path, 'w')


class Runs:
    "Loading this with plain pickle would run a shell command creating `path`."
    def __init__(self, path): self.path = str(path)
    def __reduce__(self): return os.system, (f'touch {self.path}',)


@pytest.mark.parametrize('payload', [Opens, Runs])
@pytest.mark.parametrize('protocol', [2, 4])
@pytest.mark.parametrize('where', ['data', 'labels', 'extra', 'top'])
def test_foreign_global_is_refused_and_never_runs(tmp_path, payload, protocol, where):
    target = tmp_path / 'created_by_the_pickle'
    data, labels = random_batch(5)
    evil = payload(target)
    if where == 'top': content = pickle.dumps(evil, protocol=protocol)
    elif where == 'data': content = batch_bytes(evil, labels, protocol=protocol)
    elif where == 'labels': content = batch_bytes(data, [evil] * ROWS, protocol=protocol)
    else: content = batch_bytes(data, labels, protocol=protocol, extra={b'x': evil})
    path = tmp_path / 'data_batch_1'
    path.write_bytes(content)
    name = 'open' if payload is Opens else 'system'
    with pytest.raises(ValueError, match=rf'data_batch_1.*import \S*{name}'):
        read_cifar_batch(path)
    assert not target.exists()


def test_plain_pickle_would_have_created_the_file(tmp_path):
    "Guards the test above: its payload really does create the file when loaded carelessly."
    target = tmp_path / 'created'
    pickle.loads(pickle.dumps(Opens(target), protocol=2)).close()
    assert target.exists()


@pytest.mark.parametrize('module, name', [('numpy', 'load'), ('numpy.core.multiarray', 'scalar'),
                                          ('builtins', 'getattr'), ('copyreg', '_reconstructor'),
                                          ('__main__', 'anything')])
def test_other_globals_are_refused(tmp_path, module, name):
    content = b'\x80\x02c' + f'{module}\n{name}\n'.encode() + b')R.'
    (tmp_path / 'b').write_bytes(content)
    with pytest.raises(ValueError, match=rf'import {module}\.{name}'):
        read_cifar_batch(tmp_path / 'b')


def test_codecs_encode_only_for_latin1_text(tmp_path):
    content = b'\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x04\x00\x00\x00zlib\x86R.'
    (tmp_path / 'b').write_bytes(content)
    with pytest.raises(ValueError, match='latin1'):
        read_cifar_batch(tmp_path / 'b')


def test_bytes_only_without_arguments(tmp_path):
    "Protocol 2 writes an empty byte string as `bytes()`; any other call of `bytes` is refused."
    assert b'bytes' in pickle.dumps(b'', 2)
    (tmp_path / 'b').write_bytes(b'\x80\x02c__builtin__\nbytes\nJ\x00\x00\x00\x40\x85R.')
    with pytest.raises(ValueError, match='corrupt'):
        read_cifar_batch(tmp_path / 'b')


def test_persistent_ids_are_refused(tmp_path):
    (tmp_path / 'b').write_bytes(b'\x80\x02X\x01\x00\x00\x00aQ.')
    with pytest.raises(ValueError, match=r'\bb\b'):
        read_cifar_batch(tmp_path / 'b')


GOOD_DATA, GOOD_LABELS = random_batch(6)


@pytest.mark.parametrize('content, message', [
    (pickle.dumps([1, 2, 3], 2), 'expected a dict'),
    (pickle.dumps({b'data': GOOD_DATA}, 2), "b'labels'"),
    (pickle.dumps({'data': GOOD_DATA, 'labels': GOOD_LABELS}, 2), "b'data'"),
    (batch_bytes(GOOD_DATA[:, :3071], GOOD_LABELS), r'shape \(N, 3072\)'),
    (batch_bytes(GOOD_DATA.reshape(ROWS, 3, 32, 32), GOOD_LABELS), 'shape'),
    (batch_bytes(GOOD_DATA.ravel(), GOOD_LABELS), 'shape'),
    (batch_bytes(GOOD_DATA.astype(np.float32), GOOD_LABELS), 'float32'),
    (batch_bytes(GOOD_DATA.astype(np.int64), GOOD_LABELS), 'int64'),
    (batch_bytes(GOOD_DATA.tolist(), GOOD_LABELS), 'list'),
    (batch_bytes(GOOD_DATA[:0], []), 'N > 0'),
    (batch_bytes(GOOD_DATA, [float(l) for l in GOOD_LABELS]), 'float64'),
    (batch_bytes(GOOD_DATA, b'\x01' * ROWS), 'bytes'),
    (batch_bytes(GOOD_DATA, np.array(GOOD_LABELS).reshape(4, 5)), r'shape \(4, 5\)'),
    (batch_bytes(GOOD_DATA, GOOD_LABELS[:-1]), rf'{ROWS} ints.*shape \({ROWS - 1},\)'),
    (batch_bytes(GOOD_DATA, GOOD_LABELS + [1]), rf'{ROWS} ints.*shape \({ROWS + 1},\)'),
    (batch_bytes(GOOD_DATA, GOOD_LABELS[:-1] + [10]), f'found 10 at row {ROWS - 1}'),
    (batch_bytes(GOOD_DATA, [-1] + GOOD_LABELS[1:]), 'found -1 at row 0'),
    (batch_bytes(GOOD_DATA, [2 ** 70] + GOOD_LABELS[1:]), 'labels'),
], ids=lambda v: v[:40] if isinstance(v, str) else None)
def test_wrong_contents(tmp_path, content, message):
    path = tmp_path / 'data_batch_2'
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as error:
        read_cifar_batch(path)
    assert 'data_batch_2' in str(error.value)


def test_missing_batch(tmp_path):
    batches = write_folder(tmp_path / BATCHES_DIR, members())
    (batches / 'data_batch_3').unlink()
    with pytest.raises(FileNotFoundError, match='data_batch_3'):
        read_cifar(tmp_path)
    with pytest.raises(FileNotFoundError, match='data_batch_3'):
        read_cifar_batch(batches / 'data_batch_3')


def test_read_cifar_stacks_in_file_order(tmp_path):
    files = members(10)
    write_folder(tmp_path / BATCHES_DIR, files)
    for directory in (tmp_path, tmp_path / BATCHES_DIR):
        data, labels = read_cifar(directory)
        assert data.shape == (6 * ROWS, 3072) and data.dtype == np.float32
        assert labels.dtype == np.int64
        for i in range(6):
            expected_data, expected_labels = random_batch(10 + i)
            np.testing.assert_array_equal(data[i * ROWS:(i + 1) * ROWS], expected_data)
            assert labels[i * ROWS:(i + 1) * ROWS].tolist() == expected_labels
    raw, _ = read_cifar(tmp_path, dtype=np.uint8)
    assert raw.dtype == np.uint8
    np.testing.assert_array_equal(raw, data)
    assert read_label_names(tmp_path) == list(LABEL_NAMES)


@pytest.mark.parametrize('rows', [[5, 20, 20, 20, 20, 7], [30, 2, 2, 2, 2, 1], [1] * 6])
def test_read_cifar_with_batches_of_unequal_sizes(tmp_path, rows):
    parts = [random_batch(20 + i, n) for i, n in enumerate(rows)]
    files = {name: batch_bytes(*part) for name, part in zip(BATCH_NAMES, parts)}
    write_folder(tmp_path / BATCHES_DIR, {**files, 'batches.meta': META})
    data, labels = read_cifar(tmp_path)
    np.testing.assert_array_equal(data, np.concatenate([d for d, _ in parts]))
    assert labels.tolist() == sum((l for _, l in parts), [])


def test_read_cifar_uses_the_environment(tmp_path, monkeypatch):
    write_folder(tmp_path / 'env' / BATCHES_DIR, members())
    monkeypatch.setenv('CIFAR_NN_DATA', str(tmp_path / 'env'))
    assert read_cifar()[0].shape == (6 * ROWS, 3072)


@pytest.mark.parametrize('meta', [pickle.dumps({b'label_names': [b'a'] * 9}, 2),
                                  pickle.dumps({'label_names': [n for n in LABEL_NAMES]}, 2),
                                  pickle.dumps([b'airplane'], 2), b'not a pickle'])
def test_bad_meta(tmp_path, meta):
    write_folder(tmp_path / BATCHES_DIR, {**members(), 'batches.meta': meta})
    with pytest.raises(ValueError, match='batches.meta'):
        read_label_names(tmp_path)


# ---------------------------------------------------------------- download from a local archive

def test_download_from_archive(tmp_path, archive):
    home = tmp_path / 'home'
    batches = download_cifar(home, archive=archive.path, md5=archive.md5.upper())
    assert batches == home / BATCHES_DIR
    assert sorted(p.name for p in home.iterdir()) == [BATCHES_DIR]  # nothing left over
    names = sorted(archive.files) + [cd._MARKER]
    assert sorted(p.name for p in batches.iterdir()) == sorted(names)
    for name, content in archive.files.items(): assert (batches / name).read_bytes() == content
    marker = cd.json.loads((batches / cd._MARKER).read_text())
    assert marker['md5'] == archive.md5 and marker['source'] == str(archive.path.resolve())
    assert marker['files']['test_batch']['size'] == len(archive.files['test_batch'])
    assert read_cifar(home)[0].shape == (6 * ROWS, 3072)
    assert find_cifar(home, download=False) == batches


def test_verified_copy_is_reused(good_home, archive):
    before = snapshot(good_home)
    stamp = (good_home / BATCHES_DIR / cd._MARKER).stat().st_mtime_ns
    again = download_cifar(good_home, archive=archive.path, md5=archive.md5)  # nothing extracted
    assert again == good_home / BATCHES_DIR
    assert snapshot(good_home) == before
    assert (good_home / BATCHES_DIR / cd._MARKER).stat().st_mtime_ns == stamp


def test_force_extracts_again(good_home, archive):
    stamp = (good_home / BATCHES_DIR / cd._MARKER).stat().st_mtime_ns
    download_cifar(good_home, archive=archive.path, md5=archive.md5, force=True)
    assert (good_home / BATCHES_DIR / cd._MARKER).stat().st_mtime_ns != stamp
    assert sorted(p.name for p in good_home.iterdir()) == [BATCHES_DIR]


def test_md5_mismatch_keeps_the_good_copy(good_home, tmp_path):
    before = snapshot(good_home)
    other = tmp_path / 'other.tar.gz'
    other_md5 = make_archive(other, members(100))
    with pytest.raises(DownloadError, match='md5 mismatch') as error:
        download_cifar(good_home, archive=other, md5='0' * 32, force=True)
    assert '0' * 32 in str(error.value) and other_md5 in str(error.value)
    assert str(other) in str(error.value)
    assert snapshot(good_home) == before
    assert sorted(p.name for p in good_home.iterdir()) == [BATCHES_DIR]


@pytest.mark.parametrize('md5', ['', 'abc', 'g' * 32, None, 12])
def test_bad_md5_argument(tmp_path, archive, md5):
    with pytest.raises(ValueError, match='md5'):
        download_cifar(tmp_path / 'home', archive=archive.path, md5=md5)


def test_missing_archive(tmp_path):
    with pytest.raises(FileNotFoundError, match='nowhere.tar.gz'):
        download_cifar(tmp_path / 'home', archive=tmp_path / 'nowhere.tar.gz', md5='0' * 32)


def info(name, kind=tarfile.REGTYPE, linkname=''):
    member = tarfile.TarInfo(name)
    member.type, member.linkname = kind, linkname
    return member


def bad_members(tmp_path):
    "(id, TarInfo, content, message) for members an archive must not contain."
    outside = tmp_path / 'escaped'
    return [
        ('dotdot', info(f'{BATCHES_DIR}/../../escaped'), b'x', 'climbs out'),
        ('dotdot-top', info('../escaped'), b'x', 'climbs out'),
        ('dotdot-middle', info(f'{BATCHES_DIR}/sub/../../../escaped'), b'x', 'climbs out'),
        ('absolute', info(str(outside)), b'x', 'absolute path'),
        ('absolute-inside', info(f'/{BATCHES_DIR}/data_batch_1'), b'x', 'absolute path'),
        ('symlink', info(f'{BATCHES_DIR}/link', tarfile.SYMTYPE, str(outside)), None,
         'symbolic link'),
        ('symlink-batch', info(f'{BATCHES_DIR}/readme', tarfile.SYMTYPE, '../../escaped'), None,
         'symbolic link'),
        ('hardlink', info(f'{BATCHES_DIR}/hard', tarfile.LNKTYPE, str(outside)), None, 'hard link'),
        ('hardlink-inside', info(f'{BATCHES_DIR}/hard', tarfile.LNKTYPE,
                                 f'{BATCHES_DIR}/data_batch_1'), None, 'hard link'),
        ('chardev', info(f'{BATCHES_DIR}/null', tarfile.CHRTYPE), None, 'device'),
        ('blockdev', info(f'{BATCHES_DIR}/disk', tarfile.BLKTYPE), None, 'device'),
        ('fifo', info(f'{BATCHES_DIR}/pipe', tarfile.FIFOTYPE), None, 'pipe'),
        ('subfolder', info(f'{BATCHES_DIR}/sub', tarfile.DIRTYPE), None, 'sub-folder'),
        ('nested-file', info(f'{BATCHES_DIR}/sub/file'), b'x', 'outside'),
        ('outside', info('elsewhere/file'), b'x', 'outside'),
        ('top-level-file', info('file'), b'x', 'outside'),
        ('marker', info(f'{BATCHES_DIR}/{cd._MARKER}'), b'{}', 'file name'),
        ('hidden', info(f'{BATCHES_DIR}/.hidden'), b'x', 'file name'),
        ('backslash', info(f'{BATCHES_DIR}/..\\..\\escaped'), b'x', 'file name'),
        ('duplicate', info(f'{BATCHES_DIR}/data_batch_1'), b'x', 'twice'),
    ]


BAD_MEMBER_NAMES = [case[0] for case in bad_members(Path('unused'))]


@pytest.mark.parametrize('case', BAD_MEMBER_NAMES)
def test_unsafe_archive_members(tmp_path, good_home, case):
    name, member, content, message = {c[0]: c for c in bad_members(tmp_path)}[case]
    before = snapshot(good_home)
    evil = tmp_path / f'{name}.tar.gz'
    md5 = make_archive(evil, members(), extra=[(3, member, content)])
    for home in (good_home, tmp_path / 'fresh'):
        with pytest.raises(ValueError, match=message) as error:
            download_cifar(home, archive=evil, md5=md5, force=True)
        assert repr(member.name) in str(error.value), str(error.value)
    assert snapshot(good_home) == before
    assert sorted(p.name for p in good_home.iterdir()) == [BATCHES_DIR]
    assert sorted(p.name for p in (tmp_path / 'fresh').iterdir()) == []
    assert not (tmp_path / 'escaped').exists() and not Path('/escaped').exists()


def test_folder_entry_is_optional_and_extra_files_are_kept(tmp_path):
    files = {**members(), 'readme.html': b'<html></html>'}
    path = tmp_path / 'a.tar.gz'
    md5 = make_archive(path, files, folder_entry=False)
    batches = download_cifar(tmp_path / 'home', archive=path, md5=md5)
    assert (batches / 'readme.html').read_bytes() == b'<html></html>'


def test_archive_with_right_md5_but_not_a_tar(tmp_path):
    path = tmp_path / 'fake.tar.gz'
    path.write_bytes(b'this is not an archive')
    with pytest.raises(ValueError, match='not a readable tar archive'):
        download_cifar(tmp_path / 'home', archive=path, md5=md5_of(path))
    assert list((tmp_path / 'home').iterdir()) == []


@pytest.mark.parametrize('change', ['missing test_batch', 'corrupt data_batch_4', 'foreign meta'])
def test_archive_with_right_md5_but_bad_batches(tmp_path, good_home, change):
    files = members()
    if change == 'missing test_batch': del files['test_batch']
    elif change == 'corrupt data_batch_4': files['data_batch_4'] = files['data_batch_4'][:100]
    else: files['batches.meta'] = pickle.dumps(Opens(tmp_path / 'created'), 2)
    path = tmp_path / 'bad.tar.gz'
    md5 = make_archive(path, files)
    before = snapshot(good_home)
    with pytest.raises(ValueError, match=change.split()[-1]):
        download_cifar(good_home, archive=path, md5=md5, force=True)
    assert snapshot(good_home) == before
    assert sorted(p.name for p in good_home.iterdir()) == [BATCHES_DIR]
    assert not (tmp_path / 'created').exists()


def test_damaged_copy_is_detected(good_home):
    batches = good_home / BATCHES_DIR
    assert cd._problem(batches) is None
    content = bytearray((batches / 'data_batch_2').read_bytes())
    content[-100] ^= 1  # a pixel: the pickle still reads, only the checksum can tell
    (batches / 'data_batch_2').write_bytes(bytes(content))
    assert 'changed since it was verified' in cd._problem(batches)
    with pytest.raises(FileNotFoundError, match='data_batch_2 changed since it was verified'):
        find_cifar(good_home, download=False)
    (batches / 'data_batch_2').unlink()
    assert 'data_batch_2 is missing' in cd._problem(batches)
    (batches / cd._MARKER).write_text('{not json')
    assert 'unreadable' in cd._problem(batches)


def test_replaces_a_folder_extracted_by_hand(tmp_path, archive):
    home = tmp_path / 'home'
    write_folder(home / BATCHES_DIR, members(50))
    assert find_cifar(home, download=False) == home / BATCHES_DIR  # readable: accepted as is
    assert 'was not verified' in cd._problem(home / BATCHES_DIR)
    download_cifar(home, archive=archive.path, md5=archive.md5)  # asked to verify: replaced
    assert cd._problem(home / BATCHES_DIR) is None
    assert (home / BATCHES_DIR / 'test_batch').read_bytes() == archive.files['test_batch']
    assert sorted(p.name for p in home.iterdir()) == [BATCHES_DIR]


def test_find_cifar_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        find_cifar(tmp_path / 'empty', download=False)
    for hint in ('--data-dir', 'CIFAR_NN_DATA', '--archive', '--md5', '--sample'):
        assert hint in str(error.value)
    write_folder(tmp_path / 'broken' / BATCHES_DIR, {**members(), 'test_batch': b'junk'})
    with pytest.raises(FileNotFoundError, match='test_batch'):
        find_cifar(tmp_path / 'broken', download=False)


# ---------------------------------------------------------------- download over HTTP

@pytest.fixture
def server(monkeypatch):
    "An HTTP server on 127.0.0.1 serving `routes` (path -> (body, declared length or None))."
    monkeypatch.setenv('no_proxy', '*')
    monkeypatch.setenv('NO_PROXY', '*')
    routes, requests = {}, []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            if self.path not in routes: return self.send_error(404, 'Not Found')
            body, declared = routes[self.path]
            self.send_response(200)
            self.send_header('Content-Length', str(len(body) if declared is None else declared))
            self.end_headers()
            self.wfile.write(body)  # then the connection closes, whatever was declared

        def log_message(self, *args): pass

    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield SimpleNamespace(url=f'http://127.0.0.1:{httpd.server_port}', routes=routes,
                          requests=requests)
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def test_download_over_http_and_reuse(tmp_path, server, archive):
    server.routes['/cifar.tar.gz'] = (archive.path.read_bytes(), None)
    home, url = tmp_path / 'home', server.url + '/cifar.tar.gz'
    batches = download_cifar(home, url=url, md5=archive.md5)
    assert server.requests == ['/cifar.tar.gz']
    assert sorted(p.name for p in home.iterdir()) == [BATCHES_DIR, cd._ARCHIVE]
    assert md5_of(home / cd._ARCHIVE) == archive.md5
    assert cd.json.loads((batches / cd._MARKER).read_text())['source'] == url
    assert read_cifar(home)[1].shape == (6 * ROWS,)
    assert download_cifar(home, url=url, md5=archive.md5) == batches
    assert find_cifar(home) == batches
    assert server.requests == ['/cifar.tar.gz']  # the verified copy was reused
    download_cifar(home, url=url, md5=archive.md5, force=True)
    assert server.requests == ['/cifar.tar.gz'] * 2


def test_damaged_copy_is_rebuilt_from_the_kept_archive(tmp_path, server, archive):
    server.routes['/a'] = (archive.path.read_bytes(), None)
    home = tmp_path / 'home'
    download_cifar(home, url=server.url + '/a', md5=archive.md5)
    (home / BATCHES_DIR / 'data_batch_5').write_bytes(b'damaged')
    download_cifar(home, url=server.url + '/a', md5=archive.md5)
    assert server.requests == ['/a']
    assert (home / BATCHES_DIR / 'data_batch_5').read_bytes() == archive.files['data_batch_5']


def test_transfer_cut_short(tmp_path, server, archive):
    body = archive.path.read_bytes()
    server.routes['/short'] = (body[:len(body) // 2], len(body))
    home = tmp_path / 'home'
    with pytest.raises(DownloadError, match='cut short') as error:
        download_cifar(home, url=server.url + '/short', md5=archive.md5)
    assert f'expected {len(body)} bytes, received {len(body) // 2}' in str(error.value)
    assert '/short' in str(error.value)
    assert list(home.iterdir()) == []  # no partial file


def test_failed_downloads_leave_the_good_copy(tmp_path, server, archive):
    body = archive.path.read_bytes()
    server.routes['/a'] = (body, None)
    home = tmp_path / 'home'
    download_cifar(home, url=server.url + '/a', md5=archive.md5)
    before = snapshot(home)
    server.routes['/short'] = (body[:1000], len(body))
    server.routes['/other'] = (body[:-1] + bytes([body[-1] ^ 1]), None)
    with pytest.raises(DownloadError, match='cut short'):
        download_cifar(home, url=server.url + '/short', md5=archive.md5, force=True)
    with pytest.raises(DownloadError, match=f'md5 mismatch: expected {archive.md5}'):
        download_cifar(home, url=server.url + '/other', md5=archive.md5, force=True)
    with pytest.raises(DownloadError, match='404'):
        download_cifar(home, url=server.url + '/missing', md5=archive.md5, force=True)
    assert snapshot(home) == before


def test_md5_mismatch_over_http(tmp_path, server, archive):
    server.routes['/a'] = (b'<html>an error page from a proxy</html>', None)
    home = tmp_path / 'home'
    with pytest.raises(DownloadError, match='md5 mismatch') as error:
        download_cifar(home, url=server.url + '/a', md5=archive.md5)
    assert server.url + '/a' in str(error.value)
    assert list(home.iterdir()) == []


def test_unreachable_server(tmp_path, server):
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    with pytest.raises(DownloadError, match=f'127.0.0.1:{port}'):
        download_cifar(tmp_path / 'home', url=f'http://127.0.0.1:{port}/a', md5='0' * 32)
    assert list((tmp_path / 'home').iterdir()) == []


def test_find_cifar_downloads_and_explains_failures(tmp_path, server, archive, monkeypatch):
    server.routes['/a'] = (archive.path.read_bytes(), None)
    real = cd.download_cifar
    monkeypatch.setattr(cd, 'download_cifar',
                        lambda directory, progress: real(directory, url=server.url + '/a',
                                                         md5=archive.md5, progress=progress))
    assert find_cifar(tmp_path / 'home') == tmp_path / 'home' / BATCHES_DIR
    monkeypatch.setattr(cd, 'download_cifar',
                        lambda directory, progress: real(directory, url=server.url + '/gone',
                                                         md5=archive.md5, progress=progress))
    with pytest.raises(DownloadError, match='404.*--archive'):
        find_cifar(tmp_path / 'elsewhere')


@pytest.mark.parametrize('url', ['file:///etc/passwd', 'ftp://127.0.0.1/a', 'cifar.tar.gz'])
def test_only_http_urls(tmp_path, url):
    with pytest.raises(ValueError, match='http'):
        download_cifar(tmp_path / 'home', url=url, md5='0' * 32)


# ---------------------------------------------------------------- splitting

def test_split_sizes_and_partition():
    data = np.arange(1000 * 4, dtype=np.float32).reshape(1000, 4)
    labels = np.arange(1000) % 10
    data_train, labels_train, data_test, labels_test = split_dataset(data, labels, 0.9, seed=0)
    sizes = len(data_train), len(labels_train), len(data_test), len(labels_test)
    assert sizes == (900, 900, 100, 100)
    rows = np.concatenate([data_train[:, 0], data_test[:, 0]]) // 4
    assert sorted(rows.astype(int)) == list(range(1000))  # every row once
    np.testing.assert_array_equal(labels_train, (data_train[:, 0] // 4).astype(int) % 10)
    assert data_train.dtype == np.float32 and labels_test.dtype == labels.dtype


def test_split_seed_determinism():
    data, labels = np.arange(500).reshape(500, 1), np.arange(500) % 10
    first = split_dataset(data, labels, 0.8, seed=3)
    for a, b in zip(first, split_dataset(data, labels, 0.8, seed=3)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(first, split_dataset(data, labels, 0.8, seed=np.random.default_rng(3))):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], split_dataset(data, labels, 0.8, seed=4)[0])
    unseeded = [split_dataset(data, labels, 0.8)[0] for _ in range(2)]
    assert not np.array_equal(*unseeded)


@pytest.mark.parametrize('split', [0, 1, 0.0, 1.0, -0.1, 1.5, float('nan'), True, '0.9', None])
def test_split_outside_0_1(split):
    with pytest.raises(ValueError, match='split'):
        split_dataset(np.zeros((10, 2)), np.zeros(10), split)


@pytest.mark.parametrize('n, split', [(1, 0.5), (10, 0.01), (10, 0.99), (0, 0.5)])
def test_split_leaving_a_part_empty(n, split):
    with pytest.raises(ValueError, match='both need at least one'):
        split_dataset(np.zeros((n, 2)), np.zeros(n), split)


def test_split_mismatched_lengths():
    with pytest.raises(ValueError, match='10 rows of data and 9 labels'):
        split_dataset(np.zeros((10, 2)), np.zeros(9), 0.5)


def test_split_copies_the_data_once():
    data = np.ones((4000, 3072), dtype=np.float32)  # 49 MB
    labels = np.zeros(4000, dtype=np.int64)
    tracemalloc.start()
    try:
        result = split_dataset(data, labels, 0.9, seed=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally: tracemalloc.stop()
    assert peak < 1.1 * data.nbytes, f'peak {peak / 1e6:.0f} MB for {data.nbytes / 1e6:.0f} MB'
    assert sum(part.nbytes for part in result[::2]) == data.nbytes


# ---------------------------------------------------------------- the sample

def test_load_sample():
    data_train, labels_train, data_test, labels_test = load_sample()
    assert data_train.shape == (1500, 3072) and data_test.shape == (500, 3072)
    assert data_train.dtype == np.float32 and labels_train.dtype == np.int64
    assert np.bincount(labels_train).tolist() == [150] * 10
    assert np.bincount(labels_test).tolist() == [50] * 10
    assert 0 <= data_train.min() and data_train.max() <= 255
    raw = load_sample(np.uint8)
    assert raw[0].dtype == np.uint8
    np.testing.assert_array_equal(raw[0], data_train)


# ---------------------------------------------------------------- the real dataset

@pytest.fixture(scope='module')
def real(cifar_dir):
    data, labels = read_cifar(cifar_dir)
    return SimpleNamespace(data=data, labels=labels, batches=cifar_dir)


def test_real_sizes_and_types(real):
    assert real.data.shape == (60000, 3072)
    assert real.data.dtype == np.float32 and real.labels.dtype == np.int64
    assert 0 <= real.data.min() and real.data.max() <= 255


def test_real_class_counts_and_order(real):
    assert np.bincount(real.labels).tolist() == [6000] * 10
    assert np.bincount(real.labels[:50000]).tolist() == [5000] * 10
    assert real.labels[0] == 6 and LABEL_NAMES[real.labels[0]] == 'frog'
    assert real.labels[50000] == 3 and LABEL_NAMES[real.labels[50000]] == 'cat'


def test_real_batches_agree_with_read_cifar(real):
    data, labels = read_cifar_batch(real.batches / 'test_batch', dtype=np.uint8)
    np.testing.assert_array_equal(data, real.data[50000:])
    np.testing.assert_array_equal(labels, real.labels[50000:])
    assert read_label_names(real.batches) == list(LABEL_NAMES)


def test_real_data_is_usable_by_find_cifar(real):
    assert find_cifar(real.batches, download=False) == real.batches


def test_real_sample_matches_the_dataset(real):
    "The shipped sample holds the first 150 training and 50 test images of each class."
    data_train, labels_train, data_test, labels_test = load_sample(np.uint8)
    first = np.sort(np.concatenate([np.flatnonzero(real.labels[:50000] == c)[:150]
                                    for c in range(10)]))
    np.testing.assert_array_equal(data_train, real.data[first])
    np.testing.assert_array_equal(labels_train, real.labels[first])
    test_labels = real.labels[50000:]
    first = np.sort(np.concatenate([np.flatnonzero(test_labels == c)[:50] for c in range(10)]))
    np.testing.assert_array_equal(data_test, real.data[50000:][first])
    np.testing.assert_array_equal(labels_test, test_labels[first])


def test_damaged_copy_is_named_when_the_download_fails(tmp_path, monkeypatch):
    "A broken copy is the real problem: say so before the network error."
    from cifar_nn import data
    batches = tmp_path / data.BATCHES_DIR
    batches.mkdir()
    (batches / 'test_batch').write_bytes(b'truncated')
    def offline(*a, **k): raise data.DownloadError('http://example.invalid/x: the download failed')
    monkeypatch.setattr(data, 'download_cifar', offline)
    with pytest.raises(data.DownloadError) as e: data.find_cifar(tmp_path)
    msg = str(e.value)
    assert msg.startswith(f'the copy in {batches} is not usable') and 'download failed' in msg
    assert 'To fix' in msg


def test_missing_archive_is_refused_first(tmp_path):
    from cifar_nn import data
    with pytest.raises(FileNotFoundError, match='nowhere.tar.gz'):
        data.download_cifar(tmp_path, archive=tmp_path / 'nowhere.tar.gz')


def test_missing_archive_is_refused_even_beside_a_verified_copy(good_home):
    with pytest.raises(FileNotFoundError, match='nowhere.tar.gz'):
        download_cifar(good_home, archive=good_home / 'nowhere.tar.gz')


def test_extracted_copy_has_ordinary_permissions(tmp_path, archive):
    "Temporary folders are private; the copy put in place follows the umask like any folder."
    batches = download_cifar(tmp_path / 'fresh', archive=archive.path, md5=archive.md5)
    umask = os.umask(0); os.umask(umask)
    assert batches.stat().st_mode & 0o777 == 0o777 & ~umask


def test_data_folder_that_is_a_file(tmp_path, monkeypatch):
    (tmp_path / 'afile').write_text('x')
    for where in (tmp_path / 'afile', tmp_path / 'afile' / 'sub'):
        with pytest.raises(ValueError, match=f'{tmp_path / "afile"} is a file'): data_home(where)
    monkeypatch.setenv('CIFAR_NN_DATA', str(tmp_path / 'afile'))
    with pytest.raises(ValueError, match='is a file'): data_home()


def test_damaged_copy_is_named_when_writing_the_new_one_fails(tmp_path, monkeypatch):
    batches = tmp_path / BATCHES_DIR
    batches.mkdir()
    (batches / 'test_batch').write_bytes(b'truncated')
    def read_only(*a, **k): raise PermissionError(30, 'Read-only file system')
    monkeypatch.setattr(cd, 'download_cifar', read_only)
    with pytest.raises(DownloadError, match=f'the copy in {batches} is not usable .*Read-only'):
        cd.find_cifar(tmp_path)


def test_not_a_tar_is_one_line(tmp_path):
    fake = tmp_path / 'fake.tar.gz'
    fake.write_bytes(b'garbage, not a tar')
    with pytest.raises(ValueError) as e: download_cifar(tmp_path / 'home', archive=fake, md5=md5_of(fake))
    assert 'not a readable tar archive' in str(e.value) and '\n' not in str(e.value)
