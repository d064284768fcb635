"""How fast is the kNN sweep? Times it on all of CIFAR-10 against references measured in the same run.

The task: split the 60,000 images 0.9 / 0.1 (seed 0), and predict every test image's class for
k = 1..20. Printed, each as the median of `--repeats` runs:

- the sweep (`cifar_nn.knn.knn_sweep_predict`);
- the floor: one float32 matrix product of the same shapes, `data_test @ data_train.T`
  (2 * 6,000 * 54,000 * 3,072 floating-point operations), which any exact brute-force method
  has to do; also the same product cut into the sweep's blocks of rows, for reference;
- when installed (they are not dependencies of the package): faiss-cpu `IndexFlatL2` and
  scikit-learn `KNeighborsClassifier(algorithm="brute")`, each followed by the same vote;
- peak memory: the maximum resident set size of this process after the sweeps (data + sweep),
  and of a separate `cifar-nn knn` run on the same data (the whole command line job, which
  needs a verified copy of the data: `cifar-nn download`).

Usage: CIFAR_NN_DATA=<folder holding cifar-10-batches-py> python benchmarks/knn.py [--repeats 3]
Run it on an otherwise idle machine: timings of concurrent jobs disturb each other.
"""
import argparse, os, platform, resource, statistics, subprocess, sys, tempfile, time

import numpy as np

from cifar_nn.data import read_cifar, split_dataset
from cifar_nn.knn import _row_blocks, _vote_every_k, knn_sweep_predict

MIB = 2**20


def peak_rss_mib(who=resource.RUSAGE_SELF):
    "Maximum resident set size so far, in MiB (Linux reports KiB)."
    return resource.getrusage(who).ru_maxrss / 1024


def timed(fn, repeats):
    "Run `fn` `repeats` times; return its last result and the list of wall-clock seconds."
    seconds = []
    for _ in range(repeats):
        result = None  # free the previous result before the next run allocates its own
        start = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - start)
    return result, seconds


def describe_blas():
    "Which BLAS numpy uses and how it is configured, as far as can be told."
    lines = [f'numpy {np.__version__}, Python {platform.python_version()}, '
             f'{os.cpu_count()} CPUs']
    try:
        from threadpoolctl import threadpool_info
        for pool in threadpool_info():
            lines.append(f"{pool.get('internal_api')} {pool.get('version')}: "
                         f"kernel {pool.get('architecture')}, {pool.get('num_threads')} threads "
                         f"({os.path.basename(pool.get('filepath', ''))})")
    except ImportError:
        lines.append('threadpoolctl not installed: BLAS kernel not reported')
    tuned = {k: v for k, v in os.environ.items() if k.startswith(('OPENBLAS_', 'OMP_', 'MKL_'))}
    lines.append(f'BLAS environment: {tuned or "none set"}')
    return lines


def load(split, seed):
    images, labels = read_cifar(dtype=np.uint8)
    data_train, labels_train, data_test, labels_test = split_dataset(images, labels, split, seed)
    del images
    return data_train.astype(np.float32), labels_train, data_test.astype(np.float32), labels_test


def one_product(data_train, data_test):
    "The floor: one float32 product of the full shapes (its 1.3 GB result is dropped)."
    np.matmul(data_test, data_train.T)


def product_in_blocks(data_train, data_test, memory_budget):
    "The sweep's matrix products alone, same blocks and same reused buffer."
    rows = memory_budget // (4 * len(data_train))
    blocks = _row_blocks(len(data_test), rows)
    buffer = np.empty((max(b - a for a, b in blocks), len(data_train)), np.float32)
    for start, stop in blocks:
        np.matmul(data_test[start:stop], data_train.T, out=buffer[:stop - start])


def faiss_predict(data_train, labels_train, data_test, k_max):
    import faiss
    index = faiss.IndexFlatL2(data_train.shape[1])
    index.add(data_train)
    _, nearest = index.search(data_test, k_max)
    return _vote_every_k(labels_train[nearest]).T


def sklearn_predict(data_train, labels_train, data_test, k_max):
    from sklearn.neighbors import KNeighborsClassifier
    model = KNeighborsClassifier(n_neighbors=k_max, algorithm='brute').fit(data_train, labels_train)
    nearest = model.kneighbors(data_test, return_distance=False)
    return _vote_every_k(labels_train[nearest]).T


def cli_peak_rss(split, seed, k_max):
    "Peak resident memory of a whole `cifar-nn knn` run in a child process, in MiB."
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, '-m', 'cifar_nn', 'knn', '--split', str(split), '--seed', str(seed),
               '--k-max', str(k_max), '--out', out, '--quiet']
        start = time.perf_counter()
        run = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    if run.returncode: return None, f'`cifar-nn knn` failed: {run.stderr.strip()[-300:]}'
    return peak_rss_mib(resource.RUSAGE_CHILDREN), f'{seconds:.1f} s'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeats', type=int, default=3, help='runs per measurement (median)')
    parser.add_argument('--k-max', type=int, default=20)
    parser.add_argument('--memory-budget-mib', type=int, default=256,
                        help="the sweep's memory_budget, in MiB")
    parser.add_argument('--skip', nargs='*', default=[], choices=['faiss', 'sklearn', 'cli'],
                        help='references to leave out')
    args = parser.parse_args(argv)
    if 'CIFAR_NN_DATA' not in os.environ:
        sys.exit('set CIFAR_NN_DATA to the folder holding cifar-10-batches-py/')
    split, seed, k_max, budget = 0.9, 0, args.k_max, args.memory_budget_mib * MIB

    print(*describe_blas(), sep='\n')
    # Measured first, while this process is small: a child's peak memory counts the pages it
    # shares with its parent at the fork, so a child started later would report ours.
    cli = None if 'cli' in args.skip else cli_peak_rss(split, seed, k_max)
    data_train, labels_train, data_test, labels_test = load(split, seed)
    print(f'data: split {split}, seed {seed}: {len(data_train):,} train x {len(data_test):,} test '
          f'x {data_train.shape[1]:,} features, k = 1..{k_max}; median of {args.repeats} runs\n')

    results = {}  # name -> (median seconds, all seconds, predictions or None)
    def measure(name, fn):
        predictions, seconds = timed(fn, args.repeats)
        results[name] = (statistics.median(seconds), seconds, predictions)

    measure('sweep (cifar_nn)', lambda: knn_sweep_predict(data_train, labels_train, data_test,
                                                          k_max, memory_budget=budget))
    sweep_rss = peak_rss_mib()
    measure('floor: one product', lambda: one_product(data_train, data_test))
    measure("product in the sweep's blocks",
            lambda: product_in_blocks(data_train, data_test, budget))
    notes = []
    for name, module, fn in [('faiss-cpu IndexFlatL2', 'faiss', faiss_predict),
                             ('scikit-learn brute', 'sklearn', sklearn_predict)]:
        if module in args.skip: continue
        try: __import__(module)
        except ImportError:
            notes.append(f'{name}: not installed (pip install '
                         f'{"faiss-cpu" if module == "faiss" else "scikit-learn"}), skipped')
            continue
        measure(name, lambda fn=fn: fn(data_train, labels_train, data_test, k_max))

    sweep = results['sweep (cifar_nn)'][0]
    floor = results['floor: one product'][0]
    print(f'{"":31}{"median":>9}  {"runs":<24}{"/ floor":>8}{"/ sweep":>9}{"1-NN":>8}{"best k":>13}')
    for name, (median, seconds, predictions) in results.items():
        runs = ' '.join(f'{s:.2f}' for s in seconds)
        line = f'{name:31}{median:8.2f}s  {runs:<24}{median / floor:8.3f}{median / sweep:9.2f}'
        if predictions is not None:
            accuracies = (predictions == labels_test).mean(axis=1)
            best = int(np.argmax(accuracies))
            line += f'{accuracies[0]:8.4f}{f"{best + 1}: {accuracies[best]:.4f}":>13}'
        print(line)
    print(f'\nsweep / floor = {sweep / floor:.3f} (target <= 1.2); '
          + ' '.join(f'{name} / sweep = {results[name][0] / sweep:.2f};'
                     for name in ('faiss-cpu IndexFlatL2', 'scikit-learn brute') if name in results))
    print(f'peak memory after the sweeps (this process: data + sweep): {sweep_rss:,.0f} MiB')
    if cli:
        rss, detail = cli
        print(f'peak memory of `cifar-nn knn` (whole run, child process): '
              + (f'{rss:,.0f} MiB ({detail})' if rss else detail))
    for note in notes: print(note)


if __name__ == '__main__':
    main()
