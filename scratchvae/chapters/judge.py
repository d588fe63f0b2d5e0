"""An independent judge of generated digits: softmax regression, trained on real digits.

Does the conditional VAE (cvae.py) draw the digit it is asked for? Its own networks cannot be
asked: they are what is being judged. A separate classifier, trained on real digits and never
shown a generated one, can. The smallest that reads MNIST well is a linear one:

    p(y = c | x) = softmax(x W + b)_c,   W (D, C), b (C,)          (multinomial logistic regression)
    loss(W, b)   = -1/N sum_i log p(y_i | x_i) + lam/2 ||W||^2     (cross-entropy, L2 on W)

Gradients (the softmax and the log cancel, as the Bernoulli likelihood's do in losses.py):

    dlogits = (softmax(logits) - onehot(y)) / N      (N, C)
    dW      = x^T dlogits + lam W                    (D, C)
    db      = sum_i dlogits_i                        (C,)

The loss is convex, so the optimum does not depend on the start: W = 0, b = 0, then full-batch
Adam (optim.py). It shares no weights or code path with the VAE it judges: cvae_run.py trains one
judge on the model's training digits and, as a cross-check, one on the test split, digits the
model never saw (``cvae_run.judge_the_drawn_digits`` says why both are fair).

Shapes: x (N, D) pixels in [0, 1], y (N,) integer labels 0..C-1.
"""
import numpy as np

from ..optim import Adam


def softmax(logits):
    """softmax along the last axis, without overflow (the largest logit is subtracted first)."""
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class Judge:
    """Softmax regression p(y | x) = softmax(x W + b) (the module docstring).

    Parameters: n_inputs D, n_classes C, lam the L2 weight on W. ``params``/``grads`` share one
    flat buffer each (W then b), as the VAE's do, so Adam updates them in place.
    """

    def __init__(self, n_inputs, n_classes=10, lam=1e-3, dtype=np.float64):
        D, C = int(n_inputs), int(n_classes)
        self.n_classes, self.lam = C, float(lam)
        self.flat_params, self.flat_grads = np.zeros(D * C + C, dtype), np.zeros(D * C + C, dtype)
        self.W, self.b = self.flat_params[:D * C].reshape(D, C), self.flat_params[D * C:]
        self.dW, self.db = self.flat_grads[:D * C].reshape(D, C), self.flat_grads[D * C:]

    def loss_and_grads(self, x, y):
        """Mean cross-entropy plus lam/2 ||W||^2, and its gradients into ``flat_grads``.

        Implements:  loss = -1/N sum_i log softmax(x_i W + b)_{y_i} + lam/2 ||W||^2
        Gradients:   dlogits = (p - onehot(y)) / N ;  dW = x^T dlogits + lam W ;  db = sum_i dlogits_i
        Shapes:      x (N, D), y (N,) -> loss (float)
        """
        x, y = np.asarray(x, self.W.dtype), np.asarray(y)
        N = len(x)
        logits = x @ self.W + self.b                                        # (N, C)
        log_p = logits - logits.max(axis=1, keepdims=True)
        log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))          # log softmax
        loss = -log_p[np.arange(N), y].mean() + 0.5 * self.lam * np.sum(self.W ** 2)
        dlogits = np.exp(log_p)                                             # p = softmax(logits)
        dlogits[np.arange(N), y] -= 1.0                                     # p - onehot(y)
        dlogits /= N
        self.dW[...] = x.T @ dlogits + self.lam * self.W
        self.db[...] = dlogits.sum(axis=0)
        return float(loss)

    def fit(self, x, y, steps=300, lr=0.03):
        """Full-batch Adam on ``loss_and_grads`` from W = 0, b = 0; returns the loss per step."""
        self.flat_params[...] = 0
        adam = Adam(self.flat_params, self.flat_grads, lr=lr)
        trace = []
        for _ in range(steps):
            trace.append(self.loss_and_grads(x, y))
            adam.step()
        return np.array(trace)

    def probabilities(self, x):
        """p(y = c | x) for every class.   Shapes: x (N, D) -> (N, C)"""
        return softmax(np.asarray(x, self.W.dtype) @ self.W + self.b)

    def predict(self, x):
        """The judge's label for each image, argmax_c p(y = c | x).   Shapes: x (N, D) -> (N,)"""
        return np.argmax(self.probabilities(x), axis=1)


def cross_validated_accuracy(x, y, folds=5, **judge_kwargs):
    """The judge's accuracy on real digits it was not trained on: ``folds``-fold cross-validation.

    Fold j holds every image i with i mod folds = j (so images sorted by label still give folds
    of every label). Each fold is left out in turn, a judge trained on the others
    (``Judge.fit``) labels it, and the fraction right over all images is returned with the
    folds' accuracies.
    Shapes: x (N, D), y (N,) -> (accuracy, (folds,) per-fold accuracies)
    """
    fit_kwargs = {k: judge_kwargs.pop(k) for k in ("steps", "lr") if k in judge_kwargs}
    fold = np.arange(len(x)) % folds
    right = []
    for j in range(folds):
        held, keep = np.flatnonzero(fold == j), np.flatnonzero(fold != j)
        judge = Judge(x.shape[1], **judge_kwargs)
        judge.fit(x[keep], y[keep], **fit_kwargs)
        right.append(judge.predict(x[held]) == y[held])
    return float(np.concatenate(right).mean()), np.array([r.mean() for r in right])


def asked_for_rate(judge, drawn):
    """How often generated digits are what they were asked for, by the judge.

    ``drawn`` (C, M, D): row c holds M images generated with label c ("draw me a c", as
    cvae_run.draw_me_a_digit makes them). Returns the fraction the judge labels c over all
    rows, and the per-label fractions (C,).
    """
    drawn = np.asarray(drawn)
    C, M, D = drawn.shape
    said = judge.predict(drawn.reshape(C * M, D)).reshape(C, M)
    per_label = (said == np.arange(C)[:, None]).mean(axis=1)
    return float(per_label.mean()), per_label
