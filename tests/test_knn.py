"""k-nearest neighbours: bad input, numerical edge cases, tie rules, blockwise sweeps, real data."""
import numpy as np
import pytest
from matplotlib.figure import Figure

from cifar_nn.data import load_sample, read_cifar, split_dataset
from cifar_nn.knn import (_nearest, _nearest_by_group_minima, _vote, _vote_every_k,
                          distance_matrix, evaluate_knn, knn_predict, knn_sweep,
                          knn_sweep_predict, plot_knn_sweep)


@pytest.fixture(scope='module')
def sample():
    return load_sample()


@pytest.fixture(scope='module')
def sample_dists(sample):
    data_train, _, data_test, _ = sample
    return distance_matrix(data_test, data_train)


def reference_nearest(values, k):
    "The k smallest of each row by a full sort: value first, then index."
    index = np.broadcast_to(np.arange(values.shape[1]), values.shape)
    return np.lexsort((index, values), axis=1)[:, :k]


# --- k and shapes -------------------------------------------------------------------------

@pytest.mark.parametrize('k', [0, -1, -20])
def test_k_below_one_is_refused(sample, sample_dists, k):
    data_train, labels_train, data_test, labels_test = sample
    with pytest.raises(ValueError, match='at least 1'): knn_predict(sample_dists, labels_train, k)
    with pytest.raises(ValueError, match='at least 1'):
        evaluate_knn(data_train, labels_train, data_test, labels_test, k)
    with pytest.raises(ValueError, match='k_max must be at least 1'):
        knn_sweep(data_train, labels_train, data_test, labels_test, k_max=k)


def test_k_above_training_size_is_refused(sample, sample_dists):
    data_train, labels_train, data_test, labels_test = sample
    with pytest.raises(ValueError, match='k=1501 is more than the 1500 training points'):
        knn_predict(sample_dists, labels_train, 1501)
    with pytest.raises(ValueError, match='1500 training points'):
        evaluate_knn(data_train, labels_train, data_test, labels_test, 1501)
    with pytest.raises(ValueError, match='k_max=1501'):
        knn_sweep(data_train, labels_train, data_test, labels_test, k_max=1501)


def test_k_equal_to_training_size_works():
    dists = np.array([[3., 1., 2.], [1., 1., 1.]], dtype=np.float32)
    np.testing.assert_array_equal(knn_predict(dists, np.array([0, 1, 1]), 3), [1, 1])
    np.testing.assert_array_equal(_nearest(dists, 3), [[1, 2, 0], [0, 1, 2]])


@pytest.mark.parametrize('k', [2.5, '3', None, True])
def test_k_must_be_an_integer(sample_dists, sample, k):
    with pytest.raises(ValueError, match='k must be an integer'):
        knn_predict(sample_dists, sample[1], k)


def test_numpy_integer_k_is_accepted(sample_dists, sample):
    np.testing.assert_array_equal(knn_predict(sample_dists, sample[1], np.int64(3)),
                                  knn_predict(sample_dists, sample[1], 3))


def test_feature_counts_must_match(sample):
    data_train, labels_train, data_test, labels_test = sample
    with pytest.raises(ValueError, match='a has 3072 features per point but b has 3071'):
        distance_matrix(data_test, data_train[:, :-1])
    with pytest.raises(ValueError, match='data_test has 3071'):
        evaluate_knn(data_train, labels_train, data_test[:, 1:], labels_test, 1)
    with pytest.raises(ValueError, match='data_test has 3071'):
        knn_sweep(data_train, labels_train, data_test[:, 1:], labels_test)


def test_points_must_be_rows(sample):
    data_train = sample[0]
    with pytest.raises(ValueError, match=r'a must be 2-D.*\(3072,\)'):
        distance_matrix(data_train[0], data_train)
    with pytest.raises(ValueError, match='b must be 2-D'):
        distance_matrix(data_train, data_train[None])
    with pytest.raises(ValueError, match='must hold real numbers'):
        distance_matrix(data_train.astype(complex), data_train)
    with pytest.raises(ValueError, match='must hold real numbers'):
        distance_matrix(np.array([['a', 'b']]), np.array([['c', 'd']]))


def test_label_counts_must_match(sample, sample_dists):
    data_train, labels_train, data_test, labels_test = sample
    with pytest.raises(ValueError, match='labels_train has 1499 labels but there are 1500'):
        knn_predict(sample_dists, labels_train[:-1], 1)
    with pytest.raises(ValueError, match='labels_train has 1501 labels'):
        evaluate_knn(data_train, np.append(labels_train, 0), data_test, labels_test, 1)
    with pytest.raises(ValueError, match='labels_test has 499 labels but there are 500'):
        evaluate_knn(data_train, labels_train, data_test, labels_test[1:], 1)
    with pytest.raises(ValueError, match='labels_test has 499 labels'):
        knn_sweep(data_train, labels_train, data_test, labels_test[1:])
    with pytest.raises(ValueError, match='labels_train has 1499 labels'):
        knn_sweep_predict(data_train, labels_train[1:], data_test)


def test_labels_must_be_1d_integers(sample, sample_dists):
    labels_train = sample[1]
    with pytest.raises(ValueError, match='1-D array of integer class labels'):
        knn_predict(sample_dists, labels_train.astype(float), 1)
    with pytest.raises(ValueError, match='1-D array of integer class labels'):
        knn_predict(sample_dists, labels_train[:, None], 1)


def test_dists_must_be_2d_and_numbers(sample, sample_dists):
    labels_train = sample[1]
    with pytest.raises(ValueError, match='dists must be 2-D'):
        knn_predict(sample_dists[0], labels_train, 1)
    broken = sample_dists.copy()
    broken[3, 7] = np.nan
    with pytest.raises(ValueError, match='NaN'): knn_predict(broken, labels_train, 1)


@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
def test_non_finite_data_is_refused(sample, bad):
    data_train, labels_train, data_test, labels_test = sample
    broken = data_train.copy()
    broken[5, 100] = bad
    with pytest.raises(ValueError, match=r'b holds NaN or infinite values \(first in row 5\)'):
        distance_matrix(data_test, broken)
    with pytest.raises(ValueError, match='data_train holds NaN'):
        knn_sweep(broken, labels_train, data_test, labels_test)
    with pytest.raises(ValueError, match='data_test holds NaN'):
        knn_sweep(data_train, labels_train, broken[:500], labels_test)


@pytest.mark.parametrize('budget', [0, -1, 2.5, '1MB', None])
def test_memory_budget_must_be_positive_bytes(sample, budget):
    data_train, labels_train, data_test, labels_test = sample
    with pytest.raises(ValueError, match='memory_budget must be a positive number of bytes'):
        knn_sweep(data_train, labels_train, data_test, labels_test, memory_budget=budget)
    with pytest.raises(ValueError, match='memory_budget'):
        evaluate_knn(data_train, labels_train, data_test, labels_test, 1, memory_budget=budget)


def test_empty_test_set_is_refused(sample):
    data_train, labels_train, data_test, labels_test = sample
    with pytest.raises(ValueError, match='data_test is empty'):
        knn_sweep(data_train, labels_train, data_test[:0], labels_test[:0])
    with pytest.raises(ValueError, match='data_test is empty'):
        evaluate_knn(data_train, labels_train, data_test[:0], labels_test[:0], 1)


# --- distances ----------------------------------------------------------------------------

@pytest.mark.parametrize('dtype, expected', [(np.float32, np.float32), (np.float64, np.float64),
                                             (np.uint8, np.float32), (np.int64, np.float32)])
def test_distance_dtype(dtype, expected):
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 256, (4, 12)).astype(dtype), rng.integers(0, 256, (5, 12)).astype(dtype)
    dists = distance_matrix(a, b)
    assert dists.dtype == expected and dists.shape == (4, 5)
    exact = np.sqrt(((a.astype(float)[:, None] - b.astype(float)[None]) ** 2).sum(-1))
    np.testing.assert_allclose(dists, exact, rtol=1e-5)


def test_mixed_precision_gives_the_wider_type():
    a, b = np.ones((2, 3), np.float32), np.zeros((3, 3), np.float64)
    assert distance_matrix(a, b).dtype == np.float64


def test_identical_points_are_at_distance_exactly_zero():
    rng = np.random.default_rng(1)
    # Non-integer values of CIFAR-like size: the bare expansion leaves rounding residue here.
    points = (rng.random((200, 3072)) * 255).astype(np.float32)
    dists = distance_matrix(points, points)
    assert not np.isnan(dists).any()
    np.testing.assert_array_equal(np.diag(dists), 0)
    off_diagonal = dists[~np.eye(200, dtype=bool)]
    assert off_diagonal.min() > 1000


def test_bare_expansion_would_fail_where_clamping_and_recomputing_help():
    rng = np.random.default_rng(2)
    points = (rng.random((200, 3072)) * 255).astype(np.float32)
    norms = np.einsum('ij,ij->i', points, points, dtype=np.float64).astype(np.float32)
    bare = np.diag(norms[:, None] + norms - 2 * points @ points.T)
    assert (bare != 0).any()  # the cancellation the repairs exist for
    np.testing.assert_array_equal(np.diag(distance_matrix(points, points)), 0)


def test_near_duplicates_get_accurate_small_distances():
    rng = np.random.default_rng(3)
    a = (rng.random((3, 3072)) * 255).astype(np.float32)
    b = a.copy()
    b[0, 0] += 1.0
    b[1, :4] += 2.0
    dists = distance_matrix(a, b)
    np.testing.assert_allclose(np.diag(dists), [1.0, 4.0, 0.0], atol=1e-3)


def test_duplicate_training_rows_get_bitwise_equal_distances(sample):
    data_train, _, data_test, _ = sample
    doubled = np.concatenate([data_train[:50], data_train[:50]])
    dists = distance_matrix(data_test, doubled)
    np.testing.assert_array_equal(dists[:, :50], dists[:, 50:])


def test_empty_inputs_give_empty_distances():
    assert distance_matrix(np.zeros((0, 4)), np.zeros((3, 4))).shape == (0, 3)
    assert distance_matrix(np.zeros((2, 4)), np.zeros((0, 4))).shape == (2, 0)


# --- selection and tie rules --------------------------------------------------------------

@pytest.mark.parametrize('high', [2, 5, 100, 10**7])
@pytest.mark.parametrize('n', [3, 40, 1500, 4099])
def test_selections_match_a_full_sort(high, n):
    rng = np.random.default_rng(high + n)
    values = rng.integers(0, high, size=(30, n)).astype(np.float32)
    for k in sorted({1, 2, min(n, 7), min(n, 20), n}):
        expected = reference_nearest(values, k)
        np.testing.assert_array_equal(_nearest(values, k), expected)
        np.testing.assert_array_equal(_nearest_by_group_minima(values, k), expected)


def test_equal_distances_are_ordered_by_training_index():
    # Columns 1..5 tie at 2.0; whatever order argpartition leaves them in, the lowest index wins.
    dists = np.array([[9, 2, 2, 2, 2, 2, 0]], dtype=np.float32)
    labels = np.array([0, 1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(_nearest(dists, 3), [[6, 1, 2]])
    np.testing.assert_array_equal(knn_predict(dists, labels, 2), [6])
    # k = 3: classes 6, 1, 2 (one vote each) -> nearest, 6; swap labels so index order decides
    labels_dup = np.array([0, 3, 3, 1, 1, 1, 6])
    np.testing.assert_array_equal(knn_predict(dists, labels_dup, 3), [3])


def test_duplicate_training_image_takes_the_lower_index():
    rng = np.random.default_rng(4)
    data_train = rng.integers(0, 256, (20, 48)).astype(np.float32)
    data_train[11] = data_train[3]
    labels_train = np.arange(20)
    data_test = data_train[[3]] + 0.5
    dists = distance_matrix(data_test, data_train)
    assert dists[0, 3] == dists[0, 11]
    assert knn_predict(dists, labels_train, 1)[0] == 3
    np.testing.assert_array_equal(knn_sweep_predict(data_train, labels_train, data_test, 2)[:, 0],
                                  [3, 3])


def test_class_tie_goes_to_the_class_with_the_nearest_neighbour():
    dists = np.array([[1, 2, 3, 4], [4, 3, 2, 1]], dtype=np.float32)
    labels = np.array([5, 7, 7, 5])
    np.testing.assert_array_equal(knn_predict(dists, labels, 4), [5, 5])  # 2-2, nearest is 5
    np.testing.assert_array_equal(knn_predict(dists, labels, 3), [7, 7])  # plain majority
    np.testing.assert_array_equal(knn_predict(dists, labels, 2), [5, 5])  # 1-1, nearest decides


def test_k2_equals_k1_on_random_data():
    rng = np.random.default_rng(5)
    dists = rng.random((400, 300)).astype(np.float32)
    labels = rng.integers(0, 10, 300)
    np.testing.assert_array_equal(knn_predict(dists, labels, 2), knn_predict(dists, labels, 1))
    data_train = rng.random((300, 16)).astype(np.float32)
    data_test = rng.random((400, 16)).astype(np.float32)
    predictions = knn_sweep_predict(data_train, labels, data_test, 5)
    np.testing.assert_array_equal(predictions[1], predictions[0])


def test_vote_every_k_matches_the_single_vote():
    rng = np.random.default_rng(6)
    for n_classes in (2, 3, 10):
        labels = rng.integers(0, n_classes, size=(500, 25))
        every = _vote_every_k(labels)
        for k in range(1, 26): np.testing.assert_array_equal(every[:, k - 1], _vote(labels[:, :k]))


def test_any_integer_labels_work(sample, sample_dists):
    data_train, labels_train, data_test, _ = sample
    shifted = labels_train * 100 - 7
    predictions = knn_predict(sample_dists, shifted, 5)
    np.testing.assert_array_equal(predictions, knn_predict(sample_dists, labels_train, 5) * 100 - 7)
    sweep = knn_sweep_predict(data_train, shifted, data_test, 5)
    np.testing.assert_array_equal(sweep[4], predictions)


# --- sweep --------------------------------------------------------------------------------

@pytest.mark.parametrize('budget', [1, 2 * 1500 * 4, 3 * 1500 * 4 + 1, 17 * 1500 * 4])
def test_blockwise_sweep_equals_a_single_block(sample, budget):
    data_train, labels_train, data_test, _ = sample
    subset = data_test[:61]
    whole = knn_sweep_predict(data_train, labels_train, subset, 20, memory_budget=2**30)
    blocks = knn_sweep_predict(data_train, labels_train, subset, 20, memory_budget=budget)
    np.testing.assert_array_equal(blocks, whole)


def test_sweep_matches_evaluate_knn_for_every_k(sample, sample_dists):
    data_train, labels_train, data_test, labels_test = sample
    accuracies = knn_sweep(data_train, labels_train, data_test, labels_test, k_max=20,
                           memory_budget=100 * 1500 * 4)
    predictions = knn_sweep_predict(data_train, labels_train, data_test, 20)
    assert accuracies.shape == (20,)
    for k in (1, 2, 3, 7, 20):
        assert accuracies[k - 1] == evaluate_knn(data_train, labels_train, data_test,
                                                 labels_test, k)
    for k in range(1, 21):
        np.testing.assert_array_equal(predictions[k - 1],
                                      knn_predict(sample_dists, labels_train, k))


def test_sweep_with_duplicated_training_data_matches_knn_predict():
    # Every training point appears three times under different labels: ties everywhere.
    rng = np.random.default_rng(7)
    base = rng.integers(0, 8, (200, 6)).astype(np.float32)
    data_train = np.concatenate([base, base, base])
    labels_train = rng.integers(0, 4, len(data_train))
    data_test = rng.integers(0, 8, (150, 6)).astype(np.float32)
    dists = distance_matrix(data_test, data_train)
    predictions = knn_sweep_predict(data_train, labels_train, data_test, 20, memory_budget=4000)
    for k in range(1, 21):
        np.testing.assert_array_equal(predictions[k - 1], knn_predict(dists, labels_train, k))


def test_sweep_accepts_uint8_and_non_contiguous_data(sample):
    data_train, labels_train, data_test, labels_test = sample
    expected = knn_sweep(data_train, labels_train, data_test, labels_test, k_max=3)
    raw = knn_sweep(data_train.astype(np.uint8), labels_train, data_test.astype(np.uint8),
                    labels_test, k_max=3)
    np.testing.assert_array_equal(raw, expected)
    wide = np.repeat(data_train, 2, axis=0)[::2]
    assert not wide.flags.c_contiguous
    np.testing.assert_array_equal(knn_sweep(wide, labels_train, data_test, labels_test, 3),
                                  expected)


def test_progress_bar_goes_to_stderr_only_when_asked(sample, capsys):
    data_train, labels_train, data_test, labels_test = sample
    knn_sweep(data_train, labels_train, data_test[:40], labels_test[:40], 2,
              memory_budget=10 * 1500 * 4)
    assert capsys.readouterr().err == ''
    knn_sweep(data_train, labels_train, data_test[:40], labels_test[:40], 2,
              memory_budget=10 * 1500 * 4, progress=True)
    assert 'kNN sweep' in capsys.readouterr().err


# --- plot ---------------------------------------------------------------------------------

def test_plot_marks_the_best_k():
    accuracies = [0.30, 0.30, 0.33, 0.35, 0.34, 0.35]
    fig = plot_knn_sweep(accuracies, title='split 0.9, seed 0')
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title() == 'split 0.9, seed 0'
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any('best: k = 4' in label for label in labels), labels
    assert plot_knn_sweep(accuracies).axes[0].get_title() == ''


@pytest.mark.parametrize('bad', [[], [[0.1, 0.2]], 0.3])
def test_plot_refuses_bad_accuracies(bad):
    with pytest.raises(ValueError, match='accuracies must be a non-empty 1-D'):
        plot_knn_sweep(bad)


# --- real data ----------------------------------------------------------------------------

def test_one_nn_accuracy_on_all_images(cifar_dir):
    images, labels = read_cifar(cifar_dir, dtype=np.uint8)
    data_train, labels_train, data_test, labels_test = split_dataset(images, labels, 0.9, seed=0)
    del images
    assert (len(data_train), len(data_test)) == (54_000, 6_000)
    accuracies = knn_sweep(data_train.astype(np.float32), labels_train,
                           data_test.astype(np.float32), labels_test, k_max=5)
    assert 0.34 <= accuracies[0] <= 0.37, accuracies
    assert accuracies[1] == accuracies[0]
