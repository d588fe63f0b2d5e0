"""The judge of generated digits (judge.py): its gradient, its accuracy where the best possible
accuracy is known, and the asked-for rate it reports; on real digits and the conditional VAE's
default run in the slow set."""
from statistics import NormalDist

import numpy as np
import pytest

from scratchvae.chapters.judge import Judge, asked_for_rate, cross_validated_accuracy, softmax
from scratchvae.gradcheck import numerical_gradient, rel_error


def blobs(n_per_class, centres, sd, rng):
    """Gaussian clouds, one per row of ``centres`` (C, D): x (C n, D), y (C n,)."""
    C, D = centres.shape
    y = np.repeat(np.arange(C), n_per_class)
    return centres[y] + sd * rng.standard_normal((len(y), D)), y


def test_the_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    judge = Judge(7, n_classes=4, lam=0.3)
    judge.flat_params[...] = rng.standard_normal(judge.flat_params.shape)
    x, y = rng.random((9, 7)), rng.integers(0, 4, 9)
    judge.loss_and_grads(x, y)
    analytic = judge.flat_grads.copy()
    numeric = numerical_gradient(lambda _: judge.loss_and_grads(x, y), judge.flat_params)
    assert rel_error(numeric, analytic) < 1e-8


def test_the_loss_is_the_mean_cross_entropy_plus_the_weight_penalty():
    rng = np.random.default_rng(1)
    judge = Judge(5, n_classes=3, lam=0.5)
    judge.flat_params[...] = rng.standard_normal(judge.flat_params.shape)
    x, y = rng.random((6, 5)), rng.integers(0, 3, 6)
    p = softmax(x @ judge.W + judge.b)
    np.testing.assert_allclose(p.sum(axis=1), 1)
    expected = -np.mean(np.log(p[np.arange(6), y])) + 0.25 * np.sum(judge.W ** 2)
    assert judge.loss_and_grads(x, y) == pytest.approx(expected, rel=1e-12)


def test_on_two_overlapping_classes_it_reaches_the_best_possible_accuracy():
    """Two Gaussian clouds at distance d, sd 1: no classifier beats Phi(d / 2) (the Bayes
    rule is the perpendicular bisector, a linear one); softmax regression gets there."""
    rng = np.random.default_rng(2)
    d = 2.0
    centres = np.zeros((2, 5))
    centres[1, 0] = d
    x, y = blobs(1500, centres, 1.0, rng)
    accuracy, folds = cross_validated_accuracy(x, y, folds=5, lam=1e-4, steps=300, lr=0.05)
    best = NormalDist().cdf(d / 2)                                    # 0.841
    # 3,000 test decisions: the standard error of an accuracy near 0.84 is 0.007
    assert best - 0.025 < accuracy < best + 0.02, (accuracy, best)
    assert len(folds) == 5


def test_it_labels_drawn_images_and_counts_how_often_they_are_the_asked_ones():
    rng = np.random.default_rng(3)
    centres = 4.0 * np.eye(4, 6)                                      # 4 well-separated classes
    x, y = blobs(200, centres, 0.5, rng)
    judge = Judge(6, n_classes=4)
    trace = judge.fit(x, y, steps=200, lr=0.05)
    assert trace[-1] < 0.2 * trace[0]                                 # it learned
    held, held_y = blobs(50, centres, 0.5, rng)
    assert np.mean(judge.predict(held) == held_y) > 0.99
    # "draw me a c": row c asked for class c. Rows 0 and 1 are right; row 2 draws 3s; row 3 is
    # half 3s, half 0s.
    drawn = np.stack([blobs(20, centres[[0]], 0.5, rng)[0], blobs(20, centres[[1]], 0.5, rng)[0],
                      blobs(20, centres[[3]], 0.5, rng)[0],
                      np.concatenate([blobs(10, centres[[3]], 0.5, rng)[0], blobs(10, centres[[0]], 0.5, rng)[0]])])
    rate, per_label = asked_for_rate(judge, drawn)
    np.testing.assert_allclose(per_label, [1, 1, 0, 0.5])
    assert rate == pytest.approx(0.625)
