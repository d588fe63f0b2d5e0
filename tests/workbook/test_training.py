"""Training with the learner's functions (scratchvae/workbook/training.py): the reference run is
`scratchvae train`'s, the package's functions swapped in reproduce it, so does a learner's correct
solution, and a slip changes the curve."""
import dataclasses

import numpy as np
import pytest

from helpers import synthetic_images
from mistakes import MISTAKES
from scratchvae.machinery.config import TrainConfig
from scratchvae.machinery.runner import train as scratchvae_train
from scratchvae.workbook.checker import Checker, learner_modules
from scratchvae.workbook.checks import EXERCISES
from scratchvae.workbook.cli import MODULES, own_functions
from scratchvae.workbook.training import Own, plot_runs, run, running_mean
from workbooks import SOLUTIONS, workbook_from

CONFIG = TrainConfig(hidden=(16,), latent=2, epochs=3, batch_size=32, lr=3e-3, seed=3)
REFERENCES = {f.name: f.reference for e in EXERCISES for f in e.functions}


@pytest.fixture(scope="module")
def data():
    return synthetic_images(200, seed=0), synthetic_images(40, seed=1)


@pytest.fixture(scope="module")
def reference(data):
    return run(CONFIG, *data)


def learners_run(directory, data):
    with learner_modules(directory, MODULES) as load:
        own, notes = own_functions(Checker(directory, EXERCISES, load), load)
        return run(CONFIG, *data, own, "yours"), notes


def test_the_reference_run_is_the_one_scratchvae_train_makes(data, reference):
    _, history = scratchvae_train(CONFIG, train_images=data[0], test_images=data[1], log=False)
    assert [(e["epoch"], e["step"], e["train_loss"], e["test_nelbo"]) for e in reference.epochs[1:]] == \
           [(h["epoch"], h["step"], h["train_loss"], h["test_nelbo"]) for h in history]
    assert len(reference.step_losses) == 3 * 7 and reference.epochs[0]["epoch"] == 0


@pytest.mark.parametrize("n_samples", [1, 2])
def test_the_packages_functions_swapped_in_reproduce_the_reference_losses(n_samples, data, reference):
    """vae_forward, vae_backward through the workbook's own loop: the same losses bit for bit (the
    same eps too, with L = 2 samples of z per image). With the package's Adam behind adam_step's
    interface too, float32 rounding of the moments apart: the adapter turns Adam's moment sums into
    the paper's m and v and back, one rounding a step."""
    config = dataclasses.replace(CONFIG, n_samples=n_samples)
    reference = reference if n_samples == 1 else run(config, *data)
    swapped = run(config, *data, Own(REFERENCES["vae_forward"], REFERENCES["vae_backward"]))
    assert swapped.step_losses == reference.step_losses
    assert [e["test_nelbo"] for e in swapped.epochs] == [e["test_nelbo"] for e in reference.epochs]
    with_adam = run(config, *data, Own(REFERENCES["vae_forward"], REFERENCES["vae_backward"], REFERENCES["adam_step"]))
    np.testing.assert_allclose(with_adam.step_losses, reference.step_losses, rtol=1e-6)


def test_a_learners_correct_solution_reproduces_the_reference_losses(data, reference, tmp_path):
    """Plain NumPy, other formulas (the KL without expm1, softplus with np.log1p): float32 rounding apart."""
    yours, notes = learners_run(workbook_from(SOLUTIONS, tmp_path), data)
    assert notes[0] == "your vae_forward and vae_backward (exercise 5: passes its check)"
    assert "your adam_step (exercise 6: passes its check)" in notes
    np.testing.assert_allclose(yours.step_losses, reference.step_losses, rtol=1e-5)
    np.testing.assert_allclose([e["test_nelbo"] for e in yours.epochs],
                               [e["test_nelbo"] for e in reference.epochs], rtol=1e-5)


@pytest.mark.parametrize("key", ["dlogvar_no_half", "adam_no_bias_correction"])
def test_a_slip_changes_the_curve(key, data, reference, tmp_path):
    """A wrong 1/2 still trains, but not like the reference: far outside the reproduction's tolerance."""
    yours, _ = learners_run(workbook_from(SOLUTIONS, tmp_path, *MISTAKES[key]), data)
    assert yours.failure is None and np.isfinite(yours.step_losses).all()
    difference = np.abs(np.array(yours.step_losses) - reference.step_losses) / np.array(reference.step_losses)
    assert difference[0] < 1e-6 < 1e-3 < difference.max()        # the first step is before any update


def test_blank_pieces_are_the_packages_and_the_run_says_so(data, reference, tmp_path):
    """ex5 and ex6 written, relu_backward and reparameterise still blank: those are scratchvae's."""
    workbook_from(SOLUTIONS, tmp_path)
    for file, line in (("ex1_layers.py", "    return dout * (y > 0)"), ("ex4_reparameterise.py", "    sigma = np.exp(0.5 * logvar)\n    return mu + sigma * eps")):
        text = (tmp_path / file).read_text()
        (tmp_path / file).write_text(text.replace(line, '    raise NotImplementedError("write me")'))
    (tmp_path / "ex8_iwae.py").write_text("def iwae_bound(:\n")          # a file training does not use
    yours, notes = learners_run(tmp_path, data)
    assert notes[0] == "your vae_forward and vae_backward (exercise 5: passes its check)"
    assert "scratchvae's relu_backward (yours, exercise 1, is not written yet)" in notes
    assert "scratchvae's reparameterise (yours, exercise 4, is not written yet)" in notes
    np.testing.assert_allclose(yours.step_losses, reference.step_losses, rtol=1e-5)


def test_a_non_finite_loss_stops_the_learners_run_before_its_step(data):
    calls = []

    def forward(params, x, eps):
        calls.append(1)
        return (np.nan if len(calls) == 4 else REFERENCES["vae_forward"](params, x, eps)[0]), None
    stopped = run(CONFIG, *data, Own(forward, REFERENCES["vae_backward"]))
    assert stopped.failure == ("epoch 1, step 4: the loss your vae_forward returned is nan; training "
                               "stopped before that step")
    assert len(stopped.step_losses) == 3


def test_the_figure_draws_the_runs_running_means(data, reference, tmp_path):
    drawn = plot_runs(reference, reference, tmp_path / "curves.png")
    steps, smooth = drawn[reference.label]
    assert list(steps) == list(range(1, 22))
    np.testing.assert_allclose(smooth, running_mean(reference.step_losses, 1))   # 21 steps / 30: a window of 1
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    values = np.arange(10.0)
    np.testing.assert_allclose(running_mean(values, 3), [np.mean(values[max(0, i - 2):i + 1]) for i in range(10)])
