"""The trainer: configuration checks, learning, exact resume, Ctrl-C, the divergence guard, logs."""
import io
import json
import os
import re
import signal

import numpy as np
import pytest

from scratchvae import VAE, Adam
import scratchvae.machinery.runner as train_module
from scratchvae.machinery.checkpoint import load_checkpoint, load_model
from scratchvae.machinery.runner import (ConfigError, TrainConfig, TrainingDiverged, TrainingInterrupted,
                              derive_streams, train)
from helpers import synthetic_images
from scratchvae.train import beta_at, gradient_steps

TIMING = ("img_per_s", "seconds")          # the only history fields allowed to differ between runs



IMAGES = synthetic_images(190)
TRAIN, TEST = IMAGES[:150], IMAGES[150:]


def small_config(engine="plain", **changes):
    """10 steps per epoch (the last batch smaller), dynamic binarisation, L = 2 and a KL
    warm-up: every random stream and schedule that resuming must reproduce is in use.
    engine="fused" trains with fast.py's fused step, which draws L = 1."""
    base = dict(hidden=[12], latent=3, batch_size=16, epochs=3, lr=3e-3, binarize="dynamic",
                n_samples=2 if engine == "plain" else 1, warmup_epochs=1.5, eval_batch=25, seed=7,
                engine=engine)
    return TrainConfig(**{**base, **changes})


ENGINES = ["plain", "fused"]


def run(config, **kwargs):
    return train(config, train_images=TRAIN, test_images=TEST, log=False, **kwargs)


def ctrl_c_before_step(monkeypatch, n):
    """Send SIGINT as the trainer draws its n-th training batch (counting from 1, over the
    epochs): the step on that batch completes, then the trainer sees the request."""
    real, drawn = train_module.iterate_batches, {"n": 0}

    def batches(*args, **kwargs):
        for batch in real(*args, **kwargs):
            drawn["n"] += 1
            if drawn["n"] == n:
                os.kill(os.getpid(), signal.SIGINT)
            yield batch
    monkeypatch.setattr(train_module, "iterate_batches", batches)


def without_timing(history):
    return [{k: v for k, v in record.items() if k not in TIMING} for record in history]


# ------------------------------------------------------------------ configuration
def test_the_read_along_step_trains_by_default_and_the_log_says_which_file_runs():
    assert TrainConfig().engine == "plain"
    for engine, named in (("plain", "scratchvae/vae.py"), ("fused", "scratchvae/fast/fused_step.py")):
        log = io.StringIO()
        config = small_config(engine, epochs=1)
        train(config, train_images=TRAIN, test_images=TEST, log=log)
        step_line = next(line for line in log.getvalue().splitlines() if line.startswith("training step:"))
        assert named in step_line, (engine, step_line)


def test_an_old_checkpoints_engine_auto_reads_as_the_default():
    assert TrainConfig.from_dict({**TrainConfig().to_dict(), "engine": "auto"}).engine == "plain"


@pytest.mark.parametrize("field, value", [
    ("dataset", "cifar"), ("train_split", "validation"), ("test_split", "test[::2]"),
    ("binarize", "yes"), ("hidden", [400, 0]), ("hidden", "400"), ("latent", 0), ("latent", 2.5),
    ("activation", "gelu"), ("likelihood", "poisson"), ("n_samples", 0), ("beta", -1.0),
    ("beta", float("nan")), ("warmup_epochs", -2), ("batch_size", 0), ("lr", 0.0),
    ("lr", float("inf")), ("epochs", 0), ("epochs", 2 ** 1100), ("seed", -1), ("eval_batch", 0), ("download", "no"),
    ("engine", "turbo"), ("threads", 3),
])
def test_each_bad_field_is_named(field, value):
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**{field: value})


def test_config_normalises_and_round_trips():
    config = TrainConfig(hidden=256, out=os.path.join("a", "b"))
    assert config.hidden == (256,) and isinstance(config.out, str)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ConfigError, match="unknown configuration field"):
        TrainConfig.from_dict({**config.to_dict(), "momentum": 0.9})


def test_kl_warmup_ramps_linearly_per_step():
    assert [beta_at(t, 2.0, warmup_steps=15) for t in (0, 3, 15, 40)] == [0.0, 0.4, 2.0, 2.0]
    assert beta_at(0, 0.5, 0) == 0.5


def test_the_warmup_the_trainer_applies_is_beta_at_of_each_global_step(monkeypatch):
    """warmup_epochs 1.5 of 10 steps each: beta_t = 2 t / 15 at global steps t = 0, 1, ..., 29."""
    seen, real = [], VAE.loss_and_grads

    def recording(self, x, eps=None):
        seen.append(self.beta)
        return real(self, x, eps)

    monkeypatch.setattr(VAE, "loss_and_grads", recording)
    run(small_config(epochs=3, beta=2.0, warmup_epochs=1.5))
    assert seen == [beta_at(t, 2.0, 15) for t in range(30)] and seen[3] == pytest.approx(0.4)


def test_one_master_seed_gives_the_model_its_initial_weights():
    """VAE(seed=s) and a run with seed=s start from the same weights (child 0 of the seed)."""
    streams = derive_streams(7)
    init = VAE(36, [12], 3, seed=7)
    rng = np.random.default_rng(streams["init"])
    bound = 1 / np.sqrt(36)
    assert np.array_equal(init.params["enc.fc1.W"],
                          rng.uniform(-bound, bound, size=(36, 12)).astype(np.float32))
    assert len({s.generate_state(1)[0] for s in streams.values()}) == 4      # four distinct streams


# ------------------------------------------------------------------ learning
def test_training_lowers_the_test_nelbo_and_logs_both_terms():
    model, history = run(small_config(epochs=4, binarize="none", warmup_epochs=0))
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert history[-1]["test_nelbo"] < history[0]["test_nelbo"] - 2.0
    for r in history:
        assert r["train_nelbo"] == pytest.approx(r["train_rec"] + r["train_kl"], rel=1e-12)
        assert r["test_nelbo"] == pytest.approx(r["test_rec"] + r["test_kl"], rel=1e-12)
        assert r["train_kl"] > 0 and r["img_per_s"] > 0
    assert isinstance(model, VAE) and model.latent_dim == 3


def test_the_training_images_are_evaluated_after_each_epoch_like_the_test_images():
    """train_nelbo is a running mean during the epoch; train_eval_nelbo is the number the test
    gets, on a fixed subset of the training images (as many as the test images), after the epoch."""
    from scratchvae.machinery.evaluate import evaluate_nelbo
    config = small_config(epochs=2, binarize="none", warmup_epochs=0)
    model, history = run(config)
    assert [r["train_eval_n"] for r in history] == [len(TEST)] * 2
    after = evaluate_nelbo(model, TRAIN[:len(TEST)], batch_size=config.eval_batch,
                           seed=derive_streams(config.seed)["eval"], binarize="none")
    assert history[-1]["train_eval_nelbo"] == after["nelbo"]
    assert (history[-1]["train_eval_rec"], history[-1]["train_eval_kl"]) == (after["rec"], after["kl"])
    assert history[0]["train_eval_nelbo"] < history[0]["train_nelbo"]   # the running mean lags behind


def test_same_seed_same_run_other_seed_other_run():
    a_model, a = run(small_config(epochs=1))
    b_model, b = run(small_config(epochs=1))
    c_model, c = run(small_config(epochs=1, seed=8))
    assert np.array_equal(a_model.flat_params, b_model.flat_params) and without_timing(a) == without_timing(b)
    assert not np.array_equal(a_model.flat_params, c_model.flat_params)


def test_history_files_are_written_next_to_the_checkpoint(tmp_path):
    _, history = run(small_config(epochs=2, out=tmp_path))
    assert json.loads((tmp_path / "history.json").read_text()) == history
    lines = (tmp_path / "history.csv").read_text().splitlines()
    assert lines[0].split(",") == list(history[0]) and len(lines) == 3
    assert load_checkpoint(tmp_path / "checkpoint.npz")["history"] == history


def test_a_fresh_run_does_not_overwrite_a_checkpoint_unless_asked(tmp_path):
    run(small_config(epochs=1, out=tmp_path))
    with pytest.raises(ConfigError, match="already exists.*resume"):
        run(small_config(epochs=1, out=tmp_path))
    run(small_config(epochs=1, out=tmp_path, seed=3), overwrite=True)
    assert load_checkpoint(tmp_path / "checkpoint.npz")["config"]["seed"] == 3


# ------------------------------------------------------------------ exact resume
@pytest.mark.parametrize("engine", ENGINES)
def test_resume_from_an_epoch_end_is_bit_for_bit(tmp_path, engine):
    full_model, full = run(small_config(engine, epochs=3))
    run(small_config(engine, epochs=1, out=tmp_path))
    resumed_model, resumed = run(small_config(engine, epochs=3, out=tmp_path), resume=tmp_path / "checkpoint.npz")
    assert without_timing(resumed) == without_timing(full)
    assert np.array_equal(resumed_model.flat_params, full_model.flat_params)
    assert resumed_model.rng.bit_generator.state == full_model.rng.bit_generator.state


@pytest.mark.parametrize("engine", ENGINES)
def test_ctrl_c_mid_epoch_saves_and_resume_is_bit_for_bit(tmp_path, monkeypatch, engine):
    """A real SIGINT during step 4 of epoch 2: the step completes, the state is saved, and
    resuming gives the uninterrupted run exactly."""
    full_model, full = run(small_config(engine, epochs=3))

    ctrl_c_before_step(monkeypatch, 10 + 4)                  # epoch 2, step 4 (10 steps per epoch)
    with pytest.raises(TrainingInterrupted) as stopped:
        run(small_config(engine, epochs=3, out=tmp_path))
    monkeypatch.undo()
    assert (stopped.value.epoch, stopped.value.step) == (2, 4)
    assert stopped.value.checkpoint == tmp_path / "checkpoint.npz"
    saved = load_checkpoint(tmp_path / "checkpoint.npz")
    assert saved["progress"]["epochs_done"] == 1 and saved["progress"]["step_in_epoch"] == 4
    assert len(saved["history"]) == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # handler restored

    resumed_model, resumed = run(None, resume=tmp_path / "checkpoint.npz")
    assert without_timing(resumed) == without_timing(full)
    assert np.array_equal(resumed_model.flat_params, full_model.flat_params)


def test_resume_refuses_a_different_run(tmp_path):
    run(small_config(epochs=2, out=tmp_path))
    path = tmp_path / "checkpoint.npz"
    with pytest.raises(ConfigError, match="checkpoint has latent=3, the configuration has latent=2"):
        run(small_config(epochs=3, latent=2, out=tmp_path), resume=path)
    with pytest.raises(ConfigError, match="checkpoint has seed=7"):
        run(small_config(epochs=3, seed=1, out=tmp_path), resume=path)
    with pytest.raises(ConfigError, match="epochs=1 but the checkpoint has already completed 2"):
        run(small_config(epochs=1, out=tmp_path), resume=path)
    _, history = run(small_config(epochs=2, out=tmp_path), resume=path)    # nothing to do: fine
    assert len(history) == 2


# ------------------------------------------------------------------ divergence guard
@pytest.mark.parametrize("engine", ENGINES)
def test_an_absurd_learning_rate_trips_the_guard_and_keeps_the_last_good_checkpoint(tmp_path, engine):
    run(small_config(engine, epochs=1, out=tmp_path))
    path = tmp_path / "checkpoint.npz"
    before = path.read_bytes()
    with pytest.raises(TrainingDiverged) as diverged:
        run(small_config(engine, epochs=3, lr=1e4, out=tmp_path), resume=path)
    message = str(diverged.value)
    step = re.search(r"diverged at epoch 2, step (\d+)/10 \(global step (\d+)\)", message)
    assert step and int(step[2]) == 10 + int(step[1])         # epoch 1 took 10 steps
    assert "loss is" in message or "gradient" in message
    assert f"last good checkpoint {path} (end of epoch 1) is kept" in message
    assert path.read_bytes() == before
    assert np.all(np.isfinite(load_model(path).flat_params))


def test_a_non_finite_test_nelbo_is_a_divergence_and_its_epoch_is_not_saved(tmp_path, monkeypatch):
    """Every step's loss can be finite while the parameters after them give inf or nan on the
    test images: that epoch is not saved as "good", the previous checkpoint stays."""
    real, calls = train_module.evaluate_losses, []

    def broken_after_the_first_epoch(*args, **kwargs):
        calls.append(1)
        result = real(*args, **kwargs)
        return result if len(calls) <= 2 else {**result, "nelbo": np.nan, "kl": np.inf}   # test, training subset

    monkeypatch.setattr(train_module, "evaluate_losses", broken_after_the_first_epoch)
    path = tmp_path / "checkpoint.npz"
    with pytest.raises(TrainingDiverged) as diverged:
        run(small_config(epochs=3, out=tmp_path))
    message = str(diverged.value)
    assert "diverged in epoch 2" in message and "test negative ELBO after it is nan" in message
    assert f"last good checkpoint {path} (end of epoch 1) is kept" in message
    saved = load_checkpoint(path)
    assert saved["progress"]["epochs_done"] == 1 and len(saved["history"]) == 1
    history = json.loads((tmp_path / "history.json").read_text(),
                         parse_constant=lambda c: pytest.fail(f"history.json holds {c}"))
    assert len(history) == 1 and np.isfinite(history[0]["test_nelbo"])


def test_resume_refuses_other_data(tmp_path):
    run(small_config(epochs=1, out=tmp_path))
    path = tmp_path / "checkpoint.npz"
    other = TRAIN.copy()
    other[0, 0] ^= 255                                         # one pixel differs
    with pytest.raises(ConfigError, match=r"the train images differ from the run's \(checkpoint: "
                                          r"150 images of 36 pixels, CRC-32 \d+; now: 150 images"):
        train(small_config(epochs=2, out=tmp_path), resume=path, train_images=other,
              test_images=TEST, log=False)
    with pytest.raises(ConfigError, match="the test images differ"):
        train(small_config(epochs=2, out=tmp_path), resume=path, train_images=TRAIN,
              test_images=TEST[:-1], log=False)
    _, history = run(small_config(epochs=2, out=tmp_path), resume=path)    # the same data: fine
    assert len(history) == 2


def test_resume_refuses_a_checkpoint_no_training_run_wrote(tmp_path):
    from scratchvae import Adam
    from scratchvae.machinery.checkpoint import CheckpointError, save_checkpoint
    config = small_config(epochs=2, out=tmp_path)
    model = VAE(36, [12], 3, n_samples=2, seed=7)
    save_checkpoint(tmp_path / "checkpoint.npz", model, Adam(model.flat_params, model.flat_grads),
                    config.to_dict(), [], {})                  # no progress, no generators
    with pytest.raises(CheckpointError, match="cannot resume: the checkpoint was not written by a "
                                              r"training run \(it lacks progress.json: epochs_done, .*"
                                              r"rng.json: eps, rng.json: data\)"):
        run(config, resume=tmp_path / "checkpoint.npz")


def test_an_unwritable_output_directory_is_refused_before_training(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="cannot write to the output directory .*a-file/run"):
        run(small_config(epochs=1, out=blocker / "run"))


def test_the_data_directory_is_stored_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = small_config(data_dir="data/mnist")
    assert config.data_dir == str(tmp_path / "data" / "mnist")
    assert TrainConfig.from_dict(config.to_dict()).data_dir == config.data_dir


def test_a_batch_larger_than_the_data_allocates_only_the_data(tmp_path):
    """batch_size far above N: buffers hold N rows, and one step per epoch trains on all N."""
    model, history = run(small_config(epochs=1, batch_size=10**9))
    assert history[0]["step"] == 1 and np.isfinite(history[0]["train_loss"])


def test_a_non_finite_gradient_is_caught_before_the_update(monkeypatch):
    real = VAE.loss_and_grads

    def poisoned(self, x, eps=None):
        loss, parts = real(self, x, eps)
        self.grads["dec.logits.b"][3] = np.inf
        return loss, parts

    monkeypatch.setattr(VAE, "loss_and_grads", poisoned)
    with pytest.raises(TrainingDiverged, match=r"epoch 1, step 1/10 .*gradient is not finite "
                                               r"\(first in parameter dec.logits.b\)"):
        run(small_config(epochs=1))
    optimizer_model = VAE(36, [12], 3, seed=0)
    from scratchvae import Adam
    adam = Adam(optimizer_model.flat_params, optimizer_model.flat_grads)
    theta = optimizer_model.flat_params.copy()
    with pytest.raises(train_module.NonFiniteStep):
        list(gradient_steps(optimizer_model, adam, [TRAIN[:16].astype(np.float32) / 255]))
    assert np.array_equal(optimizer_model.flat_params, theta) and adam.t == 0


def test_a_finite_gradient_whose_squared_norm_overflows_stops_as_the_fused_step_does(monkeypatch):
    real = VAE.loss_and_grads

    def huge(self, x, eps=None):
        loss, parts = real(self, x, eps)
        self.grads["enc.fc1.W"][0, 0] = 1e20                   # finite in float32; its square is not
        return loss, parts

    monkeypatch.setattr(VAE, "loss_and_grads", huge)
    model = VAE(36, [12], 3, seed=0)
    from scratchvae import Adam
    adam = Adam(model.flat_params, model.flat_grads)
    theta = model.flat_params.copy()
    with pytest.raises(train_module.NonFiniteStep, match=r"gradient overflows \(its squared norm is inf\)"):
        list(gradient_steps(model, adam, [TRAIN[:16].astype(np.float32) / 255]))
    assert np.isfinite(model.flat_grads).all()
    assert np.array_equal(model.flat_params, theta) and adam.t == 0


def _finite_loss_infinite_kl(config, D):
    """A VAE whose batch-mean KL overflows float32 (1.5e38 per image, 16 images) while its loss,
    rec + 1e-30 KL, is finite: the decoder ignores z (relu(-1) = 0), the encoder puts mu at 1e19."""
    model = VAE(D, list(config.hidden), config.latent, beta=config.beta, seed=0)
    model.params["enc.mu.W"][...], model.params["enc.mu.b"][...] = 0, 1e19
    model.params["dec.fc1.W"][...], model.params["dec.fc1.b"][...] = 0, -1
    return model


@pytest.mark.parametrize("engine", ENGINES)
def test_a_finite_loss_with_an_infinite_part_stops_before_the_update(tmp_path, monkeypatch, engine):
    """The trainer sums each step's parts over the epoch: an infinite KL behind a finite loss
    made the epoch's record inf, and writing it crashed (the test images, evaluated one at a
    time, stayed finite). Both steps refuse such a step, as they refuse an infinite loss."""
    monkeypatch.setattr(train_module, "build_model", _finite_loss_infinite_kl)
    config = small_config(engine, epochs=1, beta=1e-30, warmup_epochs=0, eval_batch=1, out=tmp_path)
    with pytest.raises(TrainingDiverged, match=r"epoch 1, step 1/10 .*the loss is \S+ \(rec [0-9.]+, KL inf\)"):
        run(config)
    assert not (tmp_path / "checkpoint.npz").exists()


def test_the_fused_step_guards_before_the_update_too():
    from scratchvae import Adam
    from scratchvae.fast.fused_step import FusedStep
    model = VAE(36, [12], 3, seed=0)
    adam = Adam(model.flat_params, model.flat_grads)
    model.params["dec.logits.b"][3] = np.nan                  # poisons the loss of every image
    theta = model.flat_params.copy()
    with FusedStep(model, adam, 16) as fused, pytest.raises(train_module.NonFiniteStep, match="loss is nan"):
        list(fused.gradient_steps([TRAIN[:16].astype(np.float32) / 255]))
    assert np.array_equal(model.flat_params, theta, equal_nan=True) and adam.t == 0


def test_the_fused_engine_steps_on_one_blas_thread_and_evaluates_on_numpys_usual_threads(monkeypatch):
    from scratchvae.fast.fused_step import FusedStep, set_blas_threads
    before = set_blas_threads(2)
    if before is None:
        pytest.skip("OpenBLAS's thread count cannot be set here (NumPy is not using its bundled OpenBLAS)")

    def blas_threads():
        now = set_blas_threads(2)
        set_blas_threads(now)
        return now

    seen = {"step": set(), "evaluate": []}
    real_step, real_evaluate = FusedStep.step, train_module._evaluate

    def step(self, x, eps):
        seen["step"].add(blas_threads())
        return real_step(self, x, eps)

    def evaluate(*args):
        seen["evaluate"].append(blas_threads())
        return real_evaluate(*args)

    monkeypatch.setattr(FusedStep, "step", step)
    monkeypatch.setattr(train_module, "_evaluate", evaluate)
    try:
        train(small_config("fused", epochs=2), train_images=TRAIN, test_images=TEST, log=False)
        assert seen == {"step": {1}, "evaluate": [2, 2, 2, 2]}    # test and seen images, each epoch
        assert blas_threads() == 2                                # restored when training ends
    finally:
        set_blas_threads(before)


# ------------------------------------------------------------------ progress output
class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_is_in_place_on_a_terminal_and_plain_otherwise():
    plain, tty = io.StringIO(), FakeTerminal()
    train(small_config(epochs=2), train_images=TRAIN, test_images=TEST, log=plain)
    train(small_config(epochs=2), train_images=TRAIN, test_images=TEST, log=tty)
    lines = plain.getvalue().splitlines()
    assert "\r" not in plain.getvalue()
    epoch_lines = [line for line in lines if line.startswith("epoch ")]
    assert len(epoch_lines) == 2
    for line in epoch_lines:
        for part in ("train -ELBO", "rec", "KL", "test -ELBO", "img/s", "time left"):
            assert part in line
    assert "\r" in tty.getvalue() and "epoch ETA" in tty.getvalue()
    assert [line for line in tty.getvalue().split("\n") if "epoch 2/2  train" in line]


# ------------------------------------------------------------------ real data, short
def test_one_short_epoch_on_real_fashion_mnist(shared_fashion_dir):
    config = TrainConfig(dataset="fashion-mnist", data_dir=shared_fashion_dir, train_split="test[:2000]",
                         test_split="test[2000:2500]", hidden=[32], latent=4, epochs=1, batch_size=64,
                         lr=3e-3, download=False)
    before = VAE(784, [32], 4, seed=config.seed)
    from scratchvae.machinery.data import load
    from scratchvae.machinery.evaluate import evaluate_nelbo
    test_images = load("fashion-mnist", "test[2000:2500]", shared_fashion_dir, download=False).images
    initial = evaluate_nelbo(before, test_images, seed=derive_streams(config.seed)["eval"])
    model, history = train(config, log=False)
    assert np.isfinite(history[0]["test_nelbo"])
    assert history[0]["test_nelbo"] < initial["nelbo"] - 100        # about 550 -> 400 nats


def test_stale_temporary_files_of_a_killed_save_are_removed_at_the_next_start(tmp_path):
    run(small_config(epochs=1, out=str(tmp_path)))
    stale = [tmp_path / ".checkpoint.npz.k9x1.tmp", tmp_path / ".history.json.k9x2.tmp"]
    for path in stale:
        path.write_bytes(b"half a save")
    log = io.StringIO()
    train(small_config(epochs=2, out=str(tmp_path)), resume=tmp_path / "checkpoint.npz",
          train_images=TRAIN, test_images=TEST, log=log)
    assert not any(p.exists() for p in stale)
    assert "removed 2 temporary file(s)" in log.getvalue()


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        run(small_config(epochs=1, out=str(tmp_path)))
    finally:
        os.umask(old)
    for name in ("checkpoint.npz", "history.json", "history.csv"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_history_files_are_rewritten_from_the_checkpoint_on_resume(tmp_path):
    """A crash between writing history.json and the checkpoint leaves the file one epoch ahead."""
    run(small_config(epochs=1, out=str(tmp_path)))
    ahead = json.loads((tmp_path / "history.json").read_text())
    ahead.append({**ahead[0], "epoch": 2})
    (tmp_path / "history.json").write_text(json.dumps(ahead))
    train(small_config(epochs=1, out=str(tmp_path)), resume=tmp_path / "checkpoint.npz",
          train_images=TRAIN, test_images=TEST, log=False)
    assert json.loads((tmp_path / "history.json").read_text()) == load_checkpoint(
        tmp_path / "checkpoint.npz")["history"]


def test_a_resumed_runs_messages_name_only_flags_resume_accepts(tmp_path):
    from scratchvae.machinery.cli import build_parser
    resume_flags = {s for a in build_parser()._subparsers._group_actions[0].choices["resume"]._actions
                    for s in a.option_strings}
    run(small_config(epochs=1, out=str(tmp_path / "a")))
    run(small_config(epochs=1, out=str(tmp_path / "b")))
    messages = []
    for attempt in (lambda: train(small_config(epochs=2, out=str(tmp_path / "b")),       # out taken
                                  resume=tmp_path / "a" / "checkpoint.npz", train_images=TRAIN,
                                  test_images=TEST, log=False),
                    lambda: train(small_config(epochs=2, lr=1e9, out=str(tmp_path / "a")),  # diverges
                                  resume=tmp_path / "a" / "checkpoint.npz", train_images=TRAIN,
                                  test_images=TEST, log=False)):
        with pytest.raises((ConfigError, TrainingDiverged)) as err:
            attempt()
        messages.append(str(err.value))
    flags = set(re.findall(r"--[a-z][a-z-]*", " ".join(messages)))
    assert flags and flags <= resume_flags, (flags - resume_flags, messages)


# ------------------------------------------------------------------ the other model types
from scratchvae.chapters.autoencoder import Autoencoder          # noqa: E402
from scratchvae.chapters.cvae import CVAE                        # noqa: E402
from scratchvae.machinery.data import DataError, iterate_batches  # noqa: E402

LABELS = np.random.default_rng(3).integers(0, 10, len(IMAGES))
TRAIN_Y, TEST_Y = LABELS[:150], LABELS[150:]
MODEL_TYPES = ["autoencoder", "cvae"]


def typed_config(model, **changes):
    """small_config for the autoencoder (no KL: beta 1, no warm-up, one z) or the cvae (all of it)."""
    no_kl = dict(n_samples=1, warmup_epochs=0) if model == "autoencoder" else {}
    return small_config(model=model, **{**no_kl, **changes})


def run_typed(config, **kwargs):
    return train(config, train_images=TRAIN, test_images=TEST, train_labels=TRAIN_Y, test_labels=TEST_Y,
                 log=False, **kwargs)


@pytest.mark.parametrize("model", MODEL_TYPES)
def test_each_model_type_resumes_from_an_epoch_end_bit_for_bit(tmp_path, model):
    full_model, full = run_typed(typed_config(model, epochs=3))
    run_typed(typed_config(model, epochs=1, out=tmp_path))
    resumed_model, resumed = run_typed(typed_config(model, epochs=3, out=tmp_path),
                                       resume=tmp_path / "checkpoint.npz")
    assert type(resumed_model) is type(full_model) is {"autoencoder": Autoencoder, "cvae": CVAE}[model]
    assert without_timing(resumed) == without_timing(full)
    assert np.array_equal(resumed_model.flat_params, full_model.flat_params)
    assert np.array_equal(load_model(tmp_path / "checkpoint.npz").flat_params, full_model.flat_params)


@pytest.mark.parametrize("model", MODEL_TYPES)
def test_each_model_type_saves_on_ctrl_c_mid_epoch_and_resumes_bit_for_bit(tmp_path, monkeypatch, model):
    full_model, full = run_typed(typed_config(model, epochs=3))
    ctrl_c_before_step(monkeypatch, 10 + 4)                  # epoch 2, step 4
    with pytest.raises(TrainingInterrupted) as stopped:
        run_typed(typed_config(model, epochs=3, out=tmp_path))
    monkeypatch.undo()
    assert (stopped.value.epoch, stopped.value.step) == (2, 4)
    saved = load_checkpoint(tmp_path / "checkpoint.npz")
    assert saved["model"]["type"] == model and saved["progress"]["step_in_epoch"] == 4
    assert sorted(saved["rng"]) == (["data"] if model == "autoencoder" else ["data", "eps"])
    resumed_model, resumed = run_typed(None, resume=tmp_path / "checkpoint.npz")
    assert without_timing(resumed) == without_timing(full)
    assert np.array_equal(resumed_model.flat_params, full_model.flat_params)


def test_the_autoencoder_through_the_trainer_is_the_autoencoder_trained_by_hand():
    """The same batches (the data stream of the seed), Autoencoder.loss_and_grads, Adam: the same
    weights, bit for bit; and the history's test number is -log p(x|z) of those weights."""
    config = typed_config("autoencoder", epochs=2, binarize="none", eval_batch=50)
    trained, history = run_typed(config)
    ae = Autoencoder(36, [12], 3, seed=config.seed)
    assert np.array_equal(train_module.build_model(config, 36).flat_params, ae.flat_params)   # child 0 of the seed
    adam = Adam(ae.flat_params, ae.flat_grads, lr=config.lr)
    data_rng = np.random.default_rng(derive_streams(config.seed)["data"])
    for _ in range(config.epochs):
        for x in iterate_batches(TRAIN, config.batch_size, data_rng, shuffle=True):
            ae.loss_and_grads(x)
            adam.step()
    assert np.array_equal(trained.flat_params, ae.flat_params)
    x_test = TEST.astype(np.float32) / np.float32(255)
    assert history[-1]["test_rec"] == float(np.sum(ae.reconstruction_error(x_test), dtype=np.float64)) / len(TEST)
    assert set(history[-1]) == {"epoch", "step", "train_loss", "train_rec", "train_eval_rec", "train_eval_n",
                                "test_rec", "img_per_s", "seconds"}           # no KL, no ELBO, no beta
    assert history[-1]["train_loss"] == history[-1]["train_rec"]


def test_the_cvae_through_the_trainer_is_the_cvae_trained_by_hand_with_the_labels_of_its_batches():
    config = typed_config("cvae", epochs=2, warmup_epochs=0)
    trained, history = run_typed(config)
    cvae = CVAE(36, [12], 3, n_samples=2, seed=config.seed)
    adam = Adam(cvae.flat_params, cvae.flat_grads, lr=config.lr)
    data_rng = np.random.default_rng(derive_streams(config.seed)["data"])
    for _ in range(config.epochs):
        for x, y in iterate_batches(TRAIN, config.batch_size, data_rng, binarize="dynamic", labels=TRAIN_Y):
            cvae.loss_and_grads(x, y)                         # eps from the model's own stream
            adam.step()
    assert np.array_equal(trained.flat_params, cvae.flat_params)
    assert history[-1]["test_nelbo"] == pytest.approx(history[-1]["test_rec"] + history[-1]["test_kl"], rel=1e-12)
    assert 0 <= history[-1]["test_active_units"] <= 3


def test_the_labels_change_the_cvae_and_follow_their_images():
    """Other labels, same images: another model (the labels reach the loss); and a batch's labels
    are those of its own images after the shuffle."""
    a, _ = run_typed(typed_config("cvae", epochs=1))
    b, _ = train(typed_config("cvae", epochs=1), train_images=TRAIN, test_images=TEST,
                 train_labels=(TRAIN_Y + 1) % 10, test_labels=TEST_Y, log=False)
    assert not np.array_equal(a.flat_params, b.flat_params)
    index = np.arange(150)
    tagged = np.repeat(index[:, None], 36, axis=1).astype(np.uint8)           # image i holds pixel value i
    for x, y in iterate_batches(tagged, 16, np.random.default_rng(0), labels=index):
        np.testing.assert_array_equal(np.rint(x[:, 0] * 255).astype(int), y)


@pytest.mark.parametrize("changes, field", [
    (dict(model="gan"), "model"),
    (dict(model="autoencoder", beta=0.5), "beta must be 1 with model 'autoencoder'"),
    (dict(model="autoencoder", warmup_epochs=2.0), "warmup_epochs must be 0 with model 'autoencoder'"),
    (dict(model="autoencoder", n_samples=3), "n_samples must be 1 with model 'autoencoder'"),
    (dict(model="autoencoder", engine="fused"), "engine must be 'plain' with model 'autoencoder'"),
    (dict(model="cvae", engine="fused"), "engine must be 'plain' with model 'cvae'"),
    (dict(model="cvae", objective="iwae"), "objective must be 'elbo' with model 'cvae'"),
    (dict(model="autoencoder", objective="iwae"), "objective must be 'elbo' with model 'autoencoder'"),
])
def test_what_a_model_type_cannot_do_is_refused_in_one_line_that_says_what_to_do(changes, field):
    with pytest.raises(ConfigError, match=re.escape(field)) as refused:
        TrainConfig(**changes)
    assert "\n" not in str(refused.value)
    if changes.get("model") in MODEL_TYPES:
        assert "leave --" in str(refused.value)


def test_a_configuration_without_a_model_type_is_a_vae():
    old = {k: v for k, v in TrainConfig().to_dict().items() if k != "model"}
    assert TrainConfig.from_dict(old).model == "vae" and TrainConfig().model == "vae"


def test_the_cvae_needs_labels():
    with pytest.raises(DataError, match="model 'cvae' is conditioned on the labels: pass train_labels"):
        train(typed_config("cvae", epochs=1), train_images=TRAIN, test_images=TEST, log=False)
    with pytest.raises(DataError, match="test_labels must hold labels 0..9, got values 10..19"):
        train(typed_config("cvae", epochs=1), train_images=TRAIN, test_images=TEST, train_labels=TRAIN_Y,
              test_labels=TEST_Y + 10, log=False)


def test_resuming_a_cvae_refuses_other_labels(tmp_path):
    run_typed(typed_config("cvae", epochs=1, out=tmp_path))
    with pytest.raises(ConfigError, match="the train images differ from the run's"):
        train(typed_config("cvae", epochs=2, out=tmp_path), resume=tmp_path / "checkpoint.npz",
              train_images=TRAIN, test_images=TEST, train_labels=(TRAIN_Y + 1) % 10, test_labels=TEST_Y,
              log=False)


@pytest.mark.parametrize("model, first_word, named", [
    ("autoencoder", "autoencoder 36-12-3-12-36", "Autoencoder.loss_and_grads in scratchvae/chapters/autoencoder.py"),
    ("cvae", "conditional VAE 36-12-3-12-36", "CVAE.loss_and_grads in scratchvae/chapters/cvae.py"),
])
def test_the_log_says_which_model_and_which_file_trains_it(model, first_word, named):
    log = io.StringIO()
    train(typed_config(model, epochs=1), train_images=TRAIN, test_images=TEST, train_labels=TRAIN_Y,
          test_labels=TEST_Y, log=log)
    lines = log.getvalue().splitlines()
    assert lines[0].startswith(first_word), lines[0]
    assert next(line for line in lines if line.startswith("training step:")).count(named) == 1
    epoch_line = next(line for line in lines if line.startswith("epoch 1/1"))
    assert ("-log p(x|z)" in epoch_line) == (model == "autoencoder") and ("KL" in epoch_line) == (model == "cvae")
