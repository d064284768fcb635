"""Times one training epoch of the same MLP in cifar_nn, PyTorch and scikit-learn.

The network is 3072-64-10 with ReLU hidden units and a softmax cross-entropy output, trained by
SGD with momentum 0.9 (learning rate 0.01, no weight decay) in float32, on the training part of
the 0.9 split of CIFAR-10 (54,000 images, standardised per pixel), full-batch and with shuffled
mini-batches of 64. Each framework runs in its own process with the same number of threads; the
loss and the number of correct predictions are computed at every step in all of them. Also
timed: the readable `learn_once_cross_entropy` (plain SGD, no momentum), for scale.

PyTorch and scikit-learn are optional (not dependencies of cifar_nn); missing ones are skipped.
Peak memory is the process's peak resident set during training, and how much of it the
training added on top of the data already loaded.

The data is prepared once and handed to the worker processes as .npy files in a temporary
folder. Every (setting, framework) pair is measured in `--rounds` separate processes, taken in
turn, and the best epoch of all is reported: a burst of other load on the machine then spoils
one measurement rather than one framework's result. The load average is printed before and
after; run the script on an otherwise idle machine.

Usage: python benchmarks/mlp.py [--threads N] [--repeats R] [--rounds K]
                                [--data-dir DIR | --synthetic]
"""
import argparse, json, os, subprocess, sys, tempfile, time

FRAMEWORKS = ('cifar_nn', 'pytorch', 'scikit-learn', 'learn_once')
D_H, LEARNING_RATE, MOMENTUM = 64, 0.01, 0.9


def rss_mb(field):
    "A memory figure of this process from /proc (VmRSS or VmHWM), in MB; None if unavailable."
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'): return int(line.split()[1]) / 1024
    except OSError: return None


def reset_peak_rss():
    "Make VmHWM start again from the current RSS (Linux); False where that is not possible."
    try:
        with open('/proc/self/clear_refs', 'w') as f: f.write('5')
        return True
    except OSError: return False


def prepare_data(args):
    "The standardised float32 training part of the 0.9 split, and its int64 labels."
    import numpy as np
    from cifar_nn import data, mlp
    if args.synthetic:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((54000, 3072), dtype=np.float32)
        return x, rng.integers(0, 10, 54000)
    images, labels = data.read_cifar(args.data_dir, dtype=np.uint8)
    x, y, _, _ = data.split_dataset(images, labels, 0.9, seed=0)
    del images
    mean, std = mlp.standardization(x)
    x = x.astype(np.float32)
    x -= mean
    x /= std
    return x, y


def epoch_runner(framework, x, y, batch_size, threads):
    "A function running one training epoch (argument: the epoch number), and a dtype check."
    import numpy as np
    from cifar_nn import mlp
    n = len(x)
    w1, b1, w2, b2 = mlp.init_mlp(x.shape[1], D_H, 10, 'he', seed=0)
    if framework == 'cifar_nn':
        net = mlp.MLP(w1, b1, w2, b2, activation='relu', loss='cross_entropy', momentum=MOMENTUM)
        def run(epoch): net.train_epoch(x, y, LEARNING_RATE, batch_size, rng=epoch)
        return run, str(net.w1.dtype)
    if framework == 'learn_once':
        params = [w1, b1, w2, b2]
        def run(epoch):
            order = np.random.default_rng(epoch).permutation(n) if batch_size else None
            for start in range(0, n, batch_size or n):
                rows = slice(None) if order is None else order[start:start + batch_size]
                params[:] = mlp.learn_once_cross_entropy(*params, x[rows], y[rows],
                                                         LEARNING_RATE, 'relu')[:4]
        return run, str(params[0].dtype)
    if framework == 'pytorch':
        import torch
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        model = torch.nn.Sequential(torch.nn.Linear(x.shape[1], D_H), torch.nn.ReLU(),
                                    torch.nn.Linear(D_H, 10))
        with torch.no_grad():
            model[0].weight.copy_(torch.from_numpy(w1.T)); model[0].bias.zero_()
            model[2].weight.copy_(torch.from_numpy(w2.T)); model[2].bias.zero_()
        optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
        cross_entropy = torch.nn.CrossEntropyLoss()
        def run(epoch):
            generator = torch.Generator().manual_seed(epoch)
            order = torch.randperm(n, generator=generator) if batch_size else None
            for start in range(0, n, batch_size or n):
                if order is None: xb, yb = xt, yt
                else:
                    rows = order[start:start + batch_size]
                    xb, yb = xt[rows], yt[rows]
                optimizer.zero_grad(set_to_none=True)
                scores = model(xb)
                loss = cross_entropy(scores, yb)
                loss.backward()
                optimizer.step()
                loss.item(), (scores.argmax(1) == yb).sum().item()
        return run, str(model[0].weight.dtype)
    if framework == 'scikit-learn':
        import warnings
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier
        warnings.simplefilter('ignore', ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(D_H,), activation='relu', solver='sgd',
                            batch_size=batch_size or n, learning_rate_init=LEARNING_RATE,
                            momentum=MOMENTUM, nesterovs_momentum=False, alpha=0.0, shuffle=True,
                            random_state=0)
        classes = np.arange(10)
        def run(epoch): clf.partial_fit(x, y, classes=classes)
        run(0)
        return run, str(clf.coefs_[0].dtype)
    raise ValueError(f'unknown framework {framework!r}')


def worker(args):
    "Time `args.repeats` epochs of one framework in this process; print one JSON line."
    import gc
    import numpy as np
    x, y = np.load(os.path.join(args.arrays, 'x.npy')), np.load(os.path.join(args.arrays, 'y.npy'))
    run, dtype = epoch_runner(args.worker, x, y, args.batch_size or None, args.threads)
    gc.collect()
    peak_resettable = reset_peak_rss()
    before = rss_mb('VmRSS')
    run(0)  # warm-up: buffers, caches, lazy initialisation
    seconds = []
    for epoch in range(1, args.repeats + 1):
        start = time.perf_counter()
        run(epoch)
        seconds.append(time.perf_counter() - start)
    peak = rss_mb('VmHWM')
    print(json.dumps(dict(seconds=seconds, dtype=dtype, rss_before_mb=before, peak_rss_mb=peak,
                          peak_is_training_only=peak_resettable, n=len(x))))


def measure(framework, batch_size, args):
    "Run a worker process; its result dict, or None with the reason when it cannot run."
    env = {**os.environ, **{v: str(args.threads) for v in (
        'OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS')}}
    cmd = [sys.executable, __file__, '--worker', framework, '--batch-size', str(batch_size),
           '--threads', str(args.threads), '--repeats', str(args.repeats),
           '--arrays', args.arrays]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode:
        last = (r.stderr.strip().splitlines() or ['no output'])[-1]
        return None, last
    return json.loads(r.stdout.strip().splitlines()[-1]), ''


def available(framework):
    module = dict(pytorch='torch', **{'scikit-learn': 'sklearn'}).get(framework)
    if module is None: return True
    import importlib.util
    return importlib.util.find_spec(module) is not None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--threads', type=int, default=os.cpu_count())
    p.add_argument('--repeats', type=int, default=3, help='timed epochs after one warm-up epoch')
    p.add_argument('--rounds', type=int, default=2, help='worker processes per measurement')
    p.add_argument('--data-dir',
                   help='folder holding cifar-10-batches-py/ (default: CIFAR_NN_DATA)')
    p.add_argument('--synthetic', action='store_true', help='random data of the same shape')
    p.add_argument('--frameworks', nargs='+', default=list(FRAMEWORKS), choices=FRAMEWORKS)
    p.add_argument('--batch-sizes', nargs='+', type=int, default=[0, 64],
                   help='0 means full batch')
    p.add_argument('--worker', choices=FRAMEWORKS, help=argparse.SUPPRESS)
    p.add_argument('--batch-size', type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument('--arrays', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker: return worker(args)
    if not args.synthetic:
        from cifar_nn import data
        try: data.find_cifar(args.data_dir, download=False)
        except FileNotFoundError as e: sys.exit(f'{e}\n(or pass --synthetic to time random data)')

    import numpy as np
    source = 'synthetic data' if args.synthetic else 'CIFAR-10 split 0.9'
    print(f'One training epoch of a 3072-{D_H}-10 ReLU/softmax MLP, SGD momentum {MOMENTUM}, '
          f'float32, {args.threads} thread(s), {source}: best and median of {args.rounds} x '
          f'{args.repeats} epochs, each process after a warm-up epoch.')
    print(f'load average before: {os.getloadavg()[0]:.2f}')
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        x, y = prepare_data(args)
        np.save(os.path.join(folder, 'x.npy'), x)
        np.save(os.path.join(folder, 'y.npy'), y)
        del x, y
        args.arrays = folder
        for _ in range(args.rounds):
            for batch_size in args.batch_sizes:
                for framework in args.frameworks:
                    if not available(framework):
                        results[batch_size, framework] = 'not installed'
                        continue
                    result, why = measure(framework, batch_size, args)
                    if result is None:
                        results[batch_size, framework] = why
                        continue
                    result['added_mb'] = result['peak_rss_mb'] - result['rss_before_mb']
                    kept = results.get((batch_size, framework))
                    if isinstance(kept, dict):
                        result['seconds'] += kept['seconds']
                        for key in ('peak_rss_mb', 'added_mb'):
                            result[key] = max(result[key], kept[key])
                    results[batch_size, framework] = result
    print(f'load average after: {os.getloadavg()[0]:.2f}')
    print(f"{'setting':<12} {'framework':<13} {'best s':>7} {'median s':>9} "
          f"{'cifar_nn / it':>13} {'peak RSS MB':>12} {'training MB':>12}")
    summary = {}
    for batch_size in args.batch_sizes:
        setting = 'full batch' if batch_size == 0 else f'batch {batch_size}'
        ours = results.get((batch_size, 'cifar_nn'))
        ours = min(ours['seconds']) if isinstance(ours, dict) else None
        others = []
        for framework in args.frameworks:
            result = results[batch_size, framework]
            if not isinstance(result, dict):
                print(f'{setting:<12} {framework:<13} skipped: {result}')
                continue
            seconds = sorted(result['seconds'])
            best, median = seconds[0], seconds[len(seconds) // 2]
            ratio = f'{ours / best:.2f}' if ours else '-'
            print(f"{setting:<12} {framework:<13} {best:>7.3f} {median:>9.3f} {ratio:>13} "
                  f"{result['peak_rss_mb']:>12.0f} {result['added_mb']:>12.0f}")
            if framework not in ('cifar_nn', 'learn_once'): others.append((best, framework))
        if ours and others:
            fastest, name = min(others)
            summary[setting] = ours / fastest
            print(f'{"":<12} cifar_nn takes {summary[setting]:.2f}x the time of the fastest other '
                  f'({name})')
    return summary


if __name__ == '__main__':
    main()
