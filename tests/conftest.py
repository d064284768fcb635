"""Shared fixtures: where the real CIFAR-10 is, and whether its absence is a failure."""
import os

import pytest

from cifar_nn.data import BATCHES_DIR, data_home


def _real_data_dir():
    "The batches folder where `cifar-nn download` puts it, or None with the reason it is unusable."
    batches = data_home() / BATCHES_DIR  # CIFAR_NN_DATA, else the cache folder
    if not (batches / 'test_batch').is_file():
        return None, f'no CIFAR-10 batches in {batches}'
    return batches, ''


@pytest.fixture(scope='session')
def cifar_dir():
    "The real CIFAR-10 batches folder; skips without it, fails if CIFAR_NN_REQUIRE_DATA=1."
    batches, why = _real_data_dir()
    if batches is not None: return batches
    msg = (f'real CIFAR-10 not available ({why}); run `cifar-nn download` (or set CIFAR_NN_DATA '
           'to the folder that holds cifar-10-batches-py/)')
    if os.environ.get('CIFAR_NN_REQUIRE_DATA') == '1': pytest.fail(msg)
    pytest.skip(msg)
