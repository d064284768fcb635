"""Shared fixtures: where the real CIFAR-10 is, and whether its absence is a failure."""
import os
from pathlib import Path

import pytest

BATCHES_DIR = 'cifar-10-batches-py'


def _real_data_dir():
    "The batches folder named by CIFAR_NN_DATA, or None with the reason it is unusable."
    root = os.environ.get('CIFAR_NN_DATA')
    if not root: return None, 'CIFAR_NN_DATA is not set'
    root = Path(root).expanduser()
    batches = root if root.name == BATCHES_DIR else root / BATCHES_DIR
    if not (batches / 'test_batch').is_file(): return None, f'no CIFAR-10 batches in {batches}'
    return batches, ''


@pytest.fixture(scope='session')
def cifar_dir():
    "The real CIFAR-10 batches folder; skips without it, fails if CIFAR_NN_REQUIRE_DATA=1."
    batches, why = _real_data_dir()
    if batches is not None: return batches
    msg = (f'real CIFAR-10 not available ({why}); run `cifar-nn download` and set CIFAR_NN_DATA '
           'to the folder that holds cifar-10-batches-py/')
    if os.environ.get('CIFAR_NN_REQUIRE_DATA') == '1': pytest.fail(msg)
    pytest.skip(msg)
