"""Tests of `cifar_nn.mlp`: gradients against finite differences, edge cases, bad input, errors."""
import json, math, warnings

import numpy as np
import pytest

from cifar_nn import mlp
from cifar_nn.data import load_sample, read_cifar_batch

PARAMS = ('w1', 'b1', 'w2', 'b2')


def small_network(seed=0, n=9, d_in=5, d_h=4, d_out=3):
    "A float64 network and batch with four different sizes, so no transpose error hides."
    rng = np.random.default_rng(seed)
    params = [rng.normal(size=(d_in, d_h)), rng.normal(size=(1, d_h)) * 0.1,
              rng.normal(size=(d_h, d_out)), rng.normal(size=(1, d_out)) * 0.1]
    return params, rng.normal(size=(n, d_in)), rng.integers(0, d_out, size=n)


def cost(params, data, labels, loss, activation):
    "The cost `learn_once_*` minimises, written independently of it."
    w1, b1, w2, b2 = params
    z1 = data @ w1 + b1
    a1 = 1 / (1 + np.exp(-z1)) if activation == 'sigmoid' else np.maximum(z1, 0)
    z2 = a1 @ w2 + b2
    y = np.eye(w2.shape[1])[labels]
    if loss == 'mse': return np.mean((1 / (1 + np.exp(-z2)) - y) ** 2)
    log_softmax = z2 - z2.max(axis=1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(axis=1, keepdims=True))
    return -np.mean(np.sum(y * log_softmax, axis=1))


def numerical_gradient(params, data, labels, loss, activation, h=1e-6):
    "Central differences of `cost` for every entry of every parameter."
    grads = []
    for i, p in enumerate(params):
        g = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            plus, minus = [q.copy() for q in params], [q.copy() for q in params]
            plus[i][idx] += h
            minus[i][idx] -= h
            g[idx] = (cost(plus, data, labels, loss, activation)
                      - cost(minus, data, labels, loss, activation)) / (2 * h)
        grads.append(g)
    return grads


def relative_error(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), 1e-300)


@pytest.mark.parametrize('activation', ['sigmoid', 'relu'])
@pytest.mark.parametrize('loss', ['mse', 'cross_entropy'])
def test_update_is_the_gradient(loss, activation):
    params, data, labels = small_network()
    if activation == 'relu':  # keep every pre-activation away from the corner at 0
        assert np.abs(data @ params[0] + params[1]).min() > 1e-3
    learning_rate = 0.5
    if loss == 'mse':
        *new, value = mlp.learn_once_mse(*params, data, mlp.one_hot(labels, 3, np.float64),
                                         learning_rate, activation)
    else:
        *new, value = mlp.learn_once_cross_entropy(*params, data, labels, learning_rate,
                                                   activation)
    assert value == pytest.approx(cost(params, data, labels, loss, activation), rel=1e-12)
    numeric = numerical_gradient(params, data, labels, loss, activation)
    for name, p, p_new, g_num in zip(PARAMS, params, new, numeric):
        assert p_new.shape == p.shape, name
        derived = (p - p_new) / learning_rate
        assert relative_error(derived, g_num) < 1e-6, (name, relative_error(derived, g_num))


@pytest.mark.parametrize('activation', ['sigmoid', 'relu'])
@pytest.mark.parametrize('loss', ['mse', 'cross_entropy'])
def test_lean_step_equals_learn_once(loss, activation):
    params, data, labels = small_network(seed=1)
    net = mlp.MLP(*params, activation=activation, loss=loss, dtype=np.float64)
    fast_loss, correct = net.step(data, labels, 0.3)
    targets = mlp.one_hot(labels, 3, np.float64) if loss == 'mse' else labels
    learn_once = mlp.learn_once_mse if loss == 'mse' else mlp.learn_once_cross_entropy
    *expected, slow_loss = learn_once(*params, data, targets, 0.3, activation)
    assert fast_loss == pytest.approx(slow_loss, rel=1e-12)
    for got, want in zip(net.weights, expected): np.testing.assert_allclose(got, want, rtol=1e-12)
    z2 = mlp.relu(data @ params[0] + params[1]) if activation == 'relu' else \
        mlp.sigmoid(data @ params[0] + params[1])
    assert correct == np.sum((z2 @ params[2] + params[3]).argmax(1) == labels)


@pytest.mark.parametrize('activation', ['sigmoid', 'relu'])
def test_predict_is_the_argmax_of_the_forward_pass(activation):
    rng = np.random.default_rng(5)
    w1, b1, w2, b2 = rng.normal(size=(6, 8)), rng.normal(size=(1, 8)), rng.normal(size=(8, 4)), \
        rng.normal(size=(1, 4)) * 3
    data = rng.normal(size=(50, 6))
    hidden = mlp.sigmoid if activation == 'sigmoid' else mlp.relu
    expected = (hidden(data @ w1 + b1) @ w2 + b2).argmax(axis=1)
    net = mlp.MLP(w1, b1, w2, b2, activation=activation, dtype=np.float64)
    np.testing.assert_array_equal(net.predict(data, batch_size=7), expected)
    mean, std = rng.normal(size=(1, 6)), rng.uniform(1, 2, size=(1, 6))
    net = mlp.MLP(w1, b1, w2, b2, activation=activation, dtype=np.float64,
                  standardization=(mean, std))
    np.testing.assert_array_equal(net.predict(data * std + mean), expected)
    labels = expected.copy()
    labels[:10] = (labels[:10] + 1) % 4
    assert mlp.test_mlp(w1, b1, w2, b2, data, labels, activation) == pytest.approx(0.8)


def test_momentum_and_weight_decay_match_their_definition():
    params, data, labels = small_network(seed=2)
    net = mlp.MLP(*params, activation='relu', momentum=0.9, weight_decay=0.1, dtype=np.float64)
    w1, velocity = params[0].copy(), np.zeros_like(params[0])
    for lr in (0.1, 0.05, 0.02):
        gradient = (w1 - mlp.learn_once_cross_entropy(w1, *net.weights[1:], data, labels, 1.0,
                                                      'relu')[0])
        net.step(data, labels, lr)
        velocity = 0.9 * velocity + lr * gradient
        w1 = w1 * (1 - lr * 0.1) - velocity
        np.testing.assert_allclose(net.w1, w1, rtol=1e-10)


def test_one_hot_on_1d_and_2d():
    np.testing.assert_array_equal(mlp.one_hot(np.array([2, 0])), np.eye(10)[[2, 0]])
    two_d = mlp.one_hot(np.array([[1, 2, 3], [0, 0, 4]]), num_classes=5)
    assert two_d.shape == (2, 3, 5) and two_d.dtype == np.float32
    np.testing.assert_array_equal(two_d.argmax(-1), [[1, 2, 3], [0, 0, 4]])
    np.testing.assert_array_equal(two_d.sum(-1), np.ones((2, 3)))
    assert mlp.one_hot(np.array([], dtype=int)).shape == (0, 10)
    assert mlp.one_hot(np.uint8(9)).shape == (10,)


@pytest.mark.parametrize('labels, message', [
    (np.array([0, 10]), r'0\.\.9, got 10 at index 1'),
    (np.array([[0, 1], [-1, 2]]), r'got -1 at index \(1, 0\)'),
    (np.array([0.0, 1.0]), 'must be integers'),
    (np.array([True, False]), 'must be integers')])
def test_one_hot_refuses_bad_labels(labels, message):
    with pytest.raises(ValueError, match=message): mlp.one_hot(labels)


@pytest.mark.parametrize('num_classes', [0, -1, 2.5, True])
def test_one_hot_refuses_bad_num_classes(num_classes):
    with pytest.raises(ValueError, match='num_classes'): mlp.one_hot(np.array([0]), num_classes)


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_sigmoid_and_softmax_at_extremes_without_warnings(dtype):
    x = np.array([-1e4, -1000, -88.8, -30, 0, 30, 88.8, 1000, 1e4], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        s = mlp.sigmoid(x)
        p = mlp.softmax(np.array([[1000, -1000, 0], [-1e4, -1e4, -1e4], [0, 1, 2]], dtype=dtype))
        net = mlp.MLP(np.full((1, 2), 100.0), np.zeros((1, 2)), np.ones((2, 2)), np.zeros((1, 2)),
                      loss='mse')
        net.step(np.array([[-10.0], [10.0]], np.float32), np.array([0, 1]), 0.1)
    assert s.dtype == dtype and np.all(np.isfinite(s))
    assert s[0] == 0 and s[1] == 0 and s[4] == 0.5 and s[-1] == 1
    assert np.all(np.diff(s) >= 0)
    np.testing.assert_allclose(s[3], 1 / (1 + math.exp(30)), rtol=1e-6)
    assert p.dtype == dtype and np.all(np.isfinite(p))
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(p[0], [1, 0, 0])
    np.testing.assert_allclose(p[1], [1 / 3] * 3, rtol=1e-6)


def separable_problem(n=300, d_in=8, classes=3, seed=0):
    "Gaussian blobs around well-separated class centres."
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, d_in)) * 4
    labels = rng.integers(0, classes, size=n)
    data = (centres[labels] + rng.normal(size=(n, d_in))).astype(np.float32)
    return data, labels


def test_loss_decreases_on_a_separable_problem():
    data, labels = separable_problem()
    w1, b1, w2, b2 = mlp.init_mlp(8, 16, 3, init='xavier', seed=0)
    losses = []
    for _ in range(60):
        w1, b1, w2, b2, loss = mlp.learn_once_cross_entropy(w1, b1, w2, b2, data, labels, 0.5)
        losses.append(loss)
    assert losses[-1] < losses[0] / 5
    assert np.all(np.diff(losses[5:]) < 0)
    *weights, accuracies = mlp.train_mlp(*mlp.init_mlp(8, 16, 3, 'xavier', seed=0), data, labels,
                                         0.5, 60, loss='cross_entropy')
    assert accuracies[-1] > 0.95 and accuracies[-1] > accuracies[0]
    assert mlp.test_mlp(*weights, data, labels) > 0.95


def test_tuned_recipe_learns_a_separable_problem():
    data, labels = separable_problem(n=600)
    result = mlp.run_recipe(data[:500], labels[:500], data[500:], labels[500:], 'tuned',
                            d_h=32, epochs=5, batch_size=32, flip=False, val_size=50)
    assert result['losses'][-1] < result['losses'][0]
    assert result['val_accuracies'][-1] > 0.95 and result['test_accuracy'] > 0.95
    assert len(result['val_accuracies']) == 5


def test_same_seed_same_weights_and_curves():
    data_train, labels_train, data_test, labels_test = load_sample()
    runs = [mlp.run_recipe(data_train, labels_train, data_test, labels_test, 'tuned', seed=seed,
                           d_h=32, epochs=2, return_model=True) for seed in (3, 3, 4)]
    (first, net1), (second, net2), (other, net3) = runs
    for key in ('train_accuracies', 'val_accuracies', 'losses', 'test_accuracy'):
        assert first[key] == second[key], key
    for a, b in zip(net1.weights, net2.weights): np.testing.assert_array_equal(a, b)
    assert first['losses'] != other['losses']
    assert not np.array_equal(net1.w1, net3.w1)
    assert mlp.run_mlp_training(data_train, labels_train, data_test, labels_test, 16, 0.1, 3,
                                seed=5) == \
        mlp.run_mlp_training(data_train, labels_train, data_test, labels_test, 16, 0.1, 3, seed=5)


def test_tutorial_recipe_is_run_mlp_training():
    data_train, labels_train, data_test, labels_test = load_sample()
    result = mlp.run_recipe(data_train, labels_train, data_test, labels_test, 'tutorial',
                            epochs=10, seed=2)
    accuracies, test_accuracy = mlp.run_mlp_training(data_train, labels_train, data_test,
                                                     labels_test, 64, 0.1, 10, seed=2)
    assert result['train_accuracies'] == accuracies and result['test_accuracy'] == test_accuracy
    assert mlp.evaluate_mlp(data_train, labels_train, data_test, labels_test, 64, 0.1, 10,
                            seed=2) == (accuracies, test_accuracy)


def test_result_is_json_and_complete():
    data_train, labels_train, data_test, labels_test = load_sample()
    result = mlp.run_recipe(data_train, labels_train, data_test, labels_test, 'tuned', d_h=16,
                            epochs=1, batch_size=256)
    assert set(result) == {'recipe', 'settings', 'train_accuracies', 'val_accuracies', 'losses',
                           'test_accuracy', 'epochs_run', 'interrupted', 'seconds'}
    assert json.loads(json.dumps(result)) == result
    assert result['settings']['batch_size'] == 256 and result['settings']['seed'] == 0
    assert result['interrupted'] is False and result['epochs_run'] == 1


def test_run_recipe_accepts_uint8_and_leaves_inputs_alone():
    data_train, labels_train, data_test, labels_test = load_sample(np.uint8)
    before = data_train.copy()
    result = mlp.run_recipe(data_train, labels_train, data_test, labels_test, 'tuned', d_h=16,
                            epochs=1)
    np.testing.assert_array_equal(data_train, before)
    assert 0 <= result['test_accuracy'] <= 1
    float_train = data_train.astype(np.float32)
    mlp.run_recipe(float_train, labels_train, data_test, labels_test, 'tuned', d_h=16, epochs=1,
                   val_size=0)
    np.testing.assert_array_equal(float_train, before)


def test_progress_bar_shows_loss_and_accuracy(capsys):
    data_train, labels_train, data_test, labels_test = load_sample()
    mlp.run_recipe(data_train, labels_train, data_test, labels_test, 'tuned', d_h=16, epochs=2,
                   progress=True)
    err = capsys.readouterr().err
    assert 'MLP tuned' in err and 'loss=' in err and 'acc=' in err and 'val=' in err
    mlp.run_recipe(data_train, labels_train, data_test, labels_test, 'tuned', d_h=16, epochs=1)
    assert capsys.readouterr().err == ''


def test_keyboard_interrupt_returns_what_was_learned(monkeypatch):
    data_train, labels_train, data_test, labels_test = load_sample()
    steps_per_epoch = math.ceil((1500 - 150) / 128)
    real_step, calls = mlp.MLP.step, []

    def step(self, *args):
        calls.append(1)
        if len(calls) == 2 * steps_per_epoch + 3: raise KeyboardInterrupt
        return real_step(self, *args)

    monkeypatch.setattr(mlp.MLP, 'step', step)
    result, net = mlp.run_recipe(data_train, labels_train, data_test, labels_test, 'tuned',
                                 d_h=32, epochs=10, return_model=True)
    assert result['interrupted'] is True
    assert result['epochs_run'] == 2 and len(result['val_accuracies']) == 2
    assert len(result['losses']) == 2
    monkeypatch.setattr(mlp.MLP, 'step', real_step)
    assert result['test_accuracy'] == np.mean(net.predict(data_test) == labels_test)
    assert result['test_accuracy'] > 0.15
    assert json.loads(json.dumps(result)) == result


def test_keyboard_interrupt_in_the_first_epoch(monkeypatch):
    data_train, labels_train, data_test, labels_test = load_sample()
    def step(self, *args): raise KeyboardInterrupt
    monkeypatch.setattr(mlp.MLP, 'step', step)
    result = mlp.run_recipe(data_train, labels_train, data_test, labels_test, 'tutorial')
    assert result['interrupted'] and result['epochs_run'] == 0 and result['train_accuracies'] == []
    assert 0 <= result['test_accuracy'] <= 1


@pytest.mark.parametrize('labels_fix, message', [
    (lambda y: np.where(np.arange(len(y)) == 7, 10, y),
     r'labels_train must lie in 0\.\.9, got 10 at index 7'),
    (lambda y: y - 1, 'got -1'),
    (lambda y: y.astype(float), 'must be integers'),
    (lambda y: y[:-1], r'labels_train must have shape \(1500,\)'),
    (lambda y: y[:, None], r'labels_train must have shape \(1500,\)')])
def test_bad_training_labels_are_refused(labels_fix, message):
    data_train, labels_train, data_test, labels_test = load_sample()
    with pytest.raises(ValueError, match=message):
        mlp.run_recipe(data_train, labels_fix(labels_train), data_test, labels_test, 'tutorial')
    with pytest.raises(ValueError, match=message):
        mlp.train_mlp(*mlp.init_mlp(3072, 4), data_train, labels_fix(labels_train), 0.1, 1)


def test_bad_test_labels_are_refused():
    data_train, labels_train, data_test, labels_test = load_sample()
    with pytest.raises(ValueError, match=r'labels_test must lie in 0\.\.9, got 1[2-9]'):
        mlp.run_recipe(data_train, labels_train, data_test, labels_test + 12, 'tutorial')
    with pytest.raises(ValueError, match='labels_test'):
        mlp.test_mlp(*mlp.init_mlp(3072, 4), data_test, labels_test[:10])


def test_shape_mismatches_are_refused():
    data_train, labels_train, data_test, labels_test = load_sample()
    with pytest.raises(ValueError, match='data_test must have 3072 columns'):
        mlp.run_recipe(data_train, labels_train, data_test[:, :100], labels_test, 'tutorial')
    with pytest.raises(ValueError, match='data_train must be 2-D'):
        mlp.run_recipe(data_train[0], labels_train, data_test, labels_test, 'tutorial')
    params, data, labels = small_network()
    w1, b1, w2, b2 = params
    with pytest.raises(ValueError, match='data must have 5 columns'):
        mlp.learn_once_cross_entropy(w1, b1, w2, b2, data[:, :4], labels, 0.1)
    with pytest.raises(ValueError, match=r'w2 must have shape \(4, 3\)'):
        mlp.learn_once_cross_entropy(w1, b1, w2[:3], b2, data, labels, 0.1)
    with pytest.raises(ValueError, match=r'b1 must have shape \(1, 4\)'):
        mlp.learn_once_mse(w1, np.zeros((2, 4)), w2, b2, data, np.zeros((9, 3)), 0.1)
    with pytest.raises(ValueError, match=r'targets must have shape \(9, 3\)'):
        mlp.learn_once_mse(w1, b1, w2, b2, data, np.zeros((9, 10)), 0.1)
    with pytest.raises(ValueError, match=r'labels_train must have shape \(9,\)'):
        mlp.learn_once_cross_entropy(w1, b1, w2, b2, data, labels[:5], 0.1)
    with pytest.raises(ValueError, match=r'data must have shape \(N, 5\)'):
        mlp.MLP(*params).predict(np.zeros((3, 6)))
    with pytest.raises(ValueError, match='flip needs CIFAR-10 rows'):
        x, y = separable_problem()
        mlp.run_recipe(x, y, x, y, 'tuned')


@pytest.mark.parametrize('overrides, message', [
    (dict(lr=0.1), r"unknown setting\(s\) \['lr'\]"), (dict(d_h=0), 'd_h must be a positive'),
    (dict(epochs=2.5), 'epochs must be'), (dict(learning_rate=-1), 'learning_rate must be'),
    (dict(learning_rate=float('nan')), 'learning_rate must be'),
    (dict(batch_size=0), 'batch_size must be'), (dict(activation='tanh'), 'activation must be'),
    (dict(loss='hinge'), 'loss must be')])
def test_bad_settings_are_refused(overrides, message):
    data_train, labels_train, data_test, labels_test = load_sample()
    with pytest.raises(ValueError, match=message):
        mlp.run_recipe(data_train, labels_train, data_test, labels_test, 'tuned', **overrides)


def test_unknown_recipe_is_refused():
    with pytest.raises(ValueError, match=r"recipe must be one of \['tuned', 'tutorial'\]"):
        mlp.run_recipe(np.zeros((2, 3)), [0, 1], np.zeros((2, 3)), [0, 1], 'fancy')


def test_diverging_learning_rate_names_the_epoch():
    data_train, labels_train, data_test, labels_test = load_sample()
    with pytest.raises(ValueError, match=r'diverged at epoch \d+.*smaller learning_rate'):
        mlp.run_recipe(data_train, labels_train, data_test, labels_test, 'tuned', d_h=32,
                       learning_rate=50.0, epochs=10)
    data, labels = separable_problem()
    with pytest.raises(ValueError, match=r'diverged at epoch \d+: the loss is (nan|inf)'):
        mlp.train_mlp(*mlp.init_mlp(8, 16, 3, 'he', seed=0), data * 1e3, labels, 1e3, 50,
                      loss='cross_entropy', activation='relu')


def test_hidden_saturation_of_the_tutorial_start():
    data_train = load_sample()[0]
    w1, b1, _, _ = mlp.init_mlp(3072, 64, seed=0)
    assert mlp.hidden_saturation(w1, b1, data_train) > 0.95
    assert mlp.hidden_saturation(w1 * 0, b1, data_train) == 0


def test_learning_rates_and_flips():
    rates = mlp.learning_rates(0.2, 10, 'cosine', warmup_steps=2)
    np.testing.assert_allclose(rates[:3], [0.1, 0.2, 0.2])
    assert np.all(np.diff(rates[2:]) < 0) and rates[-1] > 0
    with pytest.raises(ValueError, match='schedule'): mlp.learning_rates(0.1, 10, 'step')
    batch = np.arange(2 * 3072, dtype=np.float32).reshape(2, 3072)
    flipped = mlp.flip_horizontal(batch.copy(), rng=0, p=1.0)
    np.testing.assert_array_equal(flipped.reshape(2, 3, 32, 32),
                                  batch.reshape(2, 3, 32, 32)[..., ::-1])
    with pytest.raises(ValueError, match=r'batch must have shape \(N, 3072\)'):
        mlp.flip_horizontal(np.zeros((2, 10)), rng=0)


def test_plot_mlp_results():
    data_train, labels_train, data_test, labels_test = load_sample()
    results = [mlp.run_recipe(data_train, labels_train, data_test, labels_test, name, epochs=2,
                              d_h=16) for name in ('tutorial', 'tuned')]
    fig = mlp.plot_mlp_results(results)
    assert [ax.get_xlabel() for ax in fig.axes] == ['epoch', 'epoch']
    assert fig.axes[0].get_ylabel() == 'accuracy'
    texts = ' '.join(t.get_text() for ax in fig.axes for t in ax.texts)
    assert 'd_h=16' in texts and 'lr 0.1' in texts and 'raw 0-255' in texts
    assert 'tuned recipe: test accuracy' in fig.axes[1].get_title()
    with pytest.raises(ValueError, match='results is empty'): mlp.plot_mlp_results([])


def test_tutorial_start_saturates_on_real_data(cifar_dir):
    data, labels = read_cifar_batch(cifar_dir / 'data_batch_1')
    w1, b1, _, _ = mlp.init_mlp(3072, 64, seed=0)
    assert mlp.hidden_saturation(w1, b1, data[:2000]) > 0.95
    mean, std = mlp.standardization(data)
    net = mlp.MLP(*mlp.init_mlp(3072, 64, init='he', seed=0), activation='relu', momentum=0.9,
                  standardization=(mean, std))
    x = np.ascontiguousarray((data - mean) / std, dtype=np.float32)
    accuracy = [net.train_epoch(x, labels, 0.01, batch_size=128, rng=e)[1] for e in range(2)]
    assert accuracy[-1] > 0.35
    assert np.mean(net.predict(data) == labels) > 0.35
