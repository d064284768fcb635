"""Builds `cifar_nn/sample.npz`, the small real CIFAR-10 sample shipped inside the package.

Takes the first 150 training images of each class (in file order across `data_batch_1..5`) and the
first 50 test images of each class (from `test_batch`), stored as uint8 in a compressed npz.
Also draws `results/cifar10_samples.png`, three sample images per class with the class names, shown
on the docs home page and in README.md.
Usage: python scripts/make_sample.py PATH/TO/cifar-10-batches-py [OUT]
"""
import pickle, sys
from pathlib import Path

import numpy as np

PER_CLASS_TRAIN, PER_CLASS_TEST = 150, 50


class _Arrays(pickle.Unpickler):
    "Only what numpy needs to rebuild an array."
    allowed = {('numpy.core.multiarray', '_reconstruct'), ('numpy._core.multiarray', '_reconstruct'),
               ('numpy', 'ndarray'), ('numpy', 'dtype')}

    def find_class(self, module, name):
        if (module, name) not in self.allowed: raise pickle.UnpicklingError(f'refused {module}.{name}')
        return getattr(np, name) if name != '_reconstruct' else np._core.multiarray._reconstruct


def load(path):
    with open(path, 'rb') as f: d = _Arrays(f, encoding='bytes').load()
    return np.asarray(d[b'data'], dtype=np.uint8), np.asarray(d[b'labels'], dtype=np.int64)


def first_per_class(data, labels, per_class):
    keep = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)])
    keep.sort()
    return data[keep], labels[keep].astype(np.uint8)


LABEL_NAMES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck')


def draw(data, labels, out, per_class=3):
    "Save a grid of `per_class` images of each class, one column per class, named on top."
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(per_class, 10, figsize=(10, 0.35 + per_class))
    for c, name in enumerate(LABEL_NAMES):
        for r, i in enumerate(np.flatnonzero(labels == c)[:per_class]):
            axes[r, c].imshow(data[i].reshape(3, 32, 32).transpose(1, 2, 0))
            axes[r, c].set_xticks([]); axes[r, c].set_yticks([])
        axes[0, c].set_title(name, fontsize=10)
    fig.tight_layout(pad=0.3)
    fig.savefig(out, dpi=80)


def main(batches, out):
    batches = Path(batches)
    parts = [load(batches / f'data_batch_{i}') for i in range(1, 6)]
    data_train, labels_train = first_per_class(np.concatenate([p[0] for p in parts]),
                                               np.concatenate([p[1] for p in parts]), PER_CLASS_TRAIN)
    data_test, labels_test = first_per_class(*load(batches / 'test_batch'), PER_CLASS_TEST)
    np.savez_compressed(out, data_train=data_train, labels_train=labels_train,
                        data_test=data_test, labels_test=labels_test)
    draw(data_train, labels_train, Path(__file__).parents[1] / 'results' / 'cifar10_samples.png')


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else Path(__file__).parents[1] / 'cifar_nn' / 'sample.npz')
