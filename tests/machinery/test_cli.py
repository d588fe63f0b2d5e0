"""The scratchvae command: each command's happy path and its bad arguments (one line, exit 2).

The commands run in-process through ``cli.main`` on a tiny synthetic dataset written as
real IDX files, so they exercise the same loading code as real data, in well under a second.
"""
import gzip
import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.image import imread

from scratchvae.machinery.checkpoint import load_checkpoint
from scratchvae.machinery.cli import main
from scratchvae.machinery.data import FILES
from helpers import write_idx

TINY_MODEL = ["--hidden", "16", "--latent", "2", "--batch-size", "32", "--eval-batch", "50"]



@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A directory with train (96 images) and test (40) splits of 28x28 'digits': bars."""
    directory = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    for split, n in (("train", 96), ("test", 40)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = np.zeros((n, 28, 28), np.uint8)
        for i, label in enumerate(labels):
            images[i, 4 + 2 * label:6 + 2 * label, 4:24] = 255          # a bar whose row is the label
        images |= (rng.random(images.shape) < 0.02).astype(np.uint8) * 200
        images_file, labels_file = FILES[split]
        write_idx(directory / f"{images_file}.gz", images)
        write_idx(directory / f"{labels_file}.gz", labels)
    return directory


def train_args(data_dir, out, *extra):
    return ["train", "--dataset", "mnist", "--data-dir", str(data_dir), "--no-download",
            *TINY_MODEL, "--epochs", "2", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    """A run directory trained once for the tests that only read it."""
    out = tmp_path_factory.mktemp("run")
    assert main(train_args(data_dir, out)) == 0
    return out / "checkpoint.npz"


def one_error_line(capsys, command):
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    prog = f"scratchvae {command}" if command else "scratchvae"
    assert err.startswith(f"{prog}: error: "), err
    return err


# ------------------------------------------------------------------ train
def test_train_writes_checkpoint_and_history(data_dir, tmp_path, capsys):
    assert main(train_args(data_dir, tmp_path, "--binarize", "dynamic", "--seed", "3")) == 0
    out, err = capsys.readouterr()
    assert "epoch 2: test negative ELBO" in out and "epoch 2/2" in err
    assert {"checkpoint.npz", "history.json", "history.csv"} <= set(os.listdir(tmp_path))
    checkpoint = load_checkpoint(tmp_path / "checkpoint.npz")
    assert checkpoint["config"]["binarize"] == "dynamic" and checkpoint["config"]["seed"] == 3
    assert checkpoint["config"]["hidden"] == [16] and len(checkpoint["history"]) == 2


def test_train_accepts_several_hidden_layers(data_dir, tmp_path):
    args = train_args(data_dir, tmp_path, "--epochs", "1")
    args[args.index("--hidden") + 1:args.index("--hidden") + 2] = ["12", "8"]
    assert main(args) == 0
    assert load_checkpoint(tmp_path / "checkpoint.npz")["model"]["hidden_dims"] == [12, 8]


@pytest.mark.parametrize("engine", ["plain", "fused"])
def test_train_with_either_engine(data_dir, tmp_path, engine):
    assert main(train_args(data_dir, tmp_path, "--epochs", "1", "--engine", engine, "--threads", "1")) == 0
    assert load_checkpoint(tmp_path / "checkpoint.npz")["config"]["engine"] == engine


def test_fused_engine_on_a_model_it_cannot_train_is_one_line(data_dir, tmp_path, capsys):
    args = train_args(data_dir, tmp_path, "--epochs", "1", "--engine", "fused", "--activation", "tanh")
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "engine 'fused' cannot train this model: its activation is tanh" in err[0]


@pytest.mark.parametrize("flag, value", [
    ("--engine", "turbo"), ("--threads", "3"), ("--lr", "-1"), ("--lr", "abc"), ("--lr", "nan"), ("--epochs", "0"), ("--epochs", "1.5"),
    ("--hidden", "0"), ("--hidden", "-3"), ("--latent", "0"), ("--batch-size", "0"),
    ("--activation", "gelu"), ("--likelihood", "poisson"), ("--dataset", "cifar"),
    ("--test-split", "test[::2]"), ("--train-split", "valid"), ("--beta", "-0.5"),
    ("--warmup-epochs", "-1"), ("--seed", "-1"), ("--binarize", "maybe"), ("--samples", "0"),
])
def test_train_rejects_a_bad_value_in_one_line(data_dir, tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as exit_:
        main(train_args(data_dir, tmp_path, flag, value))
    assert exit_.value.code == 2
    err = one_error_line(capsys, "train")
    assert flag in err or value in err
    assert not os.listdir(tmp_path)


def test_train_reports_missing_data_in_one_line(tmp_path, capsys):
    code = main(["train", "--data-dir", str(tmp_path / "nowhere"), "--no-download", "--out", str(tmp_path)])
    assert code == 2
    assert "does not exist" in one_error_line(capsys, "train")


def test_train_refuses_to_overwrite_a_run(trained, data_dir, capsys):
    assert main(train_args(data_dir, trained.parent)) == 2
    assert "already exists" in one_error_line(capsys, "train")


# ------------------------------------------------------------------ resume
def test_resume_continues_to_the_requested_epochs(data_dir, tmp_path, capsys):
    assert main(train_args(data_dir, tmp_path, "--epochs", "1")) == 0
    assert main(["resume", str(tmp_path / "checkpoint.npz"), "--epochs", "2"]) == 0
    resumed = load_checkpoint(tmp_path / "checkpoint.npz")["history"]
    other = tmp_path / "straight"
    assert main(train_args(data_dir, other, "--epochs", "2")) == 0
    straight = load_checkpoint(other / "checkpoint.npz")["history"]
    assert [r["test_nelbo"] for r in resumed] == [r["test_nelbo"] for r in straight]


def test_resume_bad_arguments(trained, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["resume", str(trained), "--epochs", "0"])
    assert exit_.value.code == 2
    one_error_line(capsys, "resume")
    assert main(["resume", str(tmp_path / "missing.npz")]) == 2
    assert "no such checkpoint" in one_error_line(capsys, "resume")
    assert main(["resume", str(trained), "--epochs", "1"]) == 2
    assert "already completed 2" in one_error_line(capsys, "resume")
    bogus = tmp_path / "bogus.npz"
    bogus.write_bytes(b"\x80\x04K\x01.")                               # a pickle of the int 1
    assert main(["resume", str(bogus)]) == 2
    assert "pickle" in one_error_line(capsys, "resume")


def test_resume_at_a_directory_named_after_the_other_dataset_names_the_runs(trained, tmp_path, capsys):
    """The run trained on mnist; resume has no --dataset, so its advice is the run's dataset."""
    other = tmp_path / "fashion-mnist"
    other.mkdir()
    assert main(["resume", str(trained), "--epochs", "3", "--data-dir", str(other), "--no-download"]) == 2
    err = one_error_line(capsys, "resume")
    assert "this run trained on 'mnist'" in err and "point --data-dir at the mnist files" in err
    assert "--dataset" not in err


def test_resume_with_an_absurd_learning_rate_stops_with_exit_code_1(data_dir, tmp_path, capsys):
    assert main(train_args(data_dir, tmp_path, "--epochs", "1")) == 0
    capsys.readouterr()
    assert main(["resume", str(tmp_path / "checkpoint.npz"), "--epochs", "4", "--lr", "1e4"]) == 1
    err = capsys.readouterr().err
    # at a step, or at an epoch's end when the step losses stayed finite but the evaluation did not
    match = re.search(r"scratchvae resume: error: training diverged (?:at epoch (\d+), step|in epoch (\d+):)", err)
    assert match and "RuntimeWarning" not in err, err
    epoch = int(match[1] or match[2])
    assert f"checkpoint.npz (end of epoch {epoch - 1}) is kept" in err
    checkpoint = load_checkpoint(tmp_path / "checkpoint.npz")
    assert len(checkpoint["history"]) == epoch - 1
    assert all(np.all(np.isfinite(p)) for p in checkpoint["params"].values())


# ------------------------------------------------------------------ evaluate
def test_evaluate_json_is_one_object_on_stdout(trained, data_dir, capsys):
    code = main(["evaluate", str(trained), "--dataset", "mnist", "--data-dir", str(data_dir),
                 "--test-split", "test", "--is-k", "50", "--limit", "10", "--json"])
    assert code == 0
    out = capsys.readouterr().out
    report = json.loads(out)                                     # the whole of stdout is one object
    assert {"test_nelbo", "test_rec", "test_kl", "is_nll", "is_k", "n"} <= set(report)
    assert report["is_k"] == 50 and report["n"] == 40 and report["is_n"] == 10
    assert report["estimator"] == "importance-sampled (IWAE) bound, k=50"
    # with the run's seed, the negative ELBO is the one the training log ended with
    last = load_checkpoint(trained)["history"][-1]
    assert report["test_nelbo"] == pytest.approx(last["test_nelbo"], rel=1e-12)


def test_evaluate_defaults_to_the_runs_data_and_prints_a_report(trained, capsys):
    assert main(["evaluate", str(trained), "--is-k", "10", "--limit", "all"]) == 0
    out = capsys.readouterr().out
    assert "negative ELBO" in out and "k=10" in out and "first 40 images" in out


@pytest.mark.parametrize("extra", [["--is-k", "-1"], ["--limit", "0"], ["--limit", "some"],
                                   ["--batch-size", "0"], ["--test-split", "dev"]])
def test_evaluate_bad_arguments(trained, capsys, extra):
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", str(trained), *extra])
    assert exit_.value.code == 2
    one_error_line(capsys, "evaluate")


@pytest.mark.parametrize("extra, named", [(["--limit", "1"], "--limit 1"),
                                          (["--test-split", "test[:1]"], "mnist test[:1] holds one image"),
                                          (["--test-split", "test[-1:]", "--limit", "5"], "test[-1:] holds one image"),
                                          (["--limit", "1", "--engine", "fused"], "--limit 1")])
def test_evaluate_on_one_image_has_no_standard_error_and_says_so(trained, capsys, extra, named):
    """It printed '+/- 0.000 s.e.'; docs/reliability.md calls one image where a standard error
    needs two bad input: one line, exit 2, before any work."""
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", str(trained), "--is-k", "5", *extra])
    assert exit_.value.code == 2
    err = one_error_line(capsys, "evaluate")
    assert named in err and "no standard error" in err and "--is-k 0" in err
    assert main(["evaluate", str(trained), "--is-k", "0", *extra, "--json"]) == 0   # no estimate: fine
    report = json.loads(capsys.readouterr().out)
    assert report["is_nll"] is None and report["is_nll_sem"] is None


def test_evaluate_with_the_fused_engine_gives_the_same_report(trained, capsys):
    reports = []
    for engine in ("plain", "fused"):
        assert main(["evaluate", str(trained), "--is-k", "30", "--limit", "all", "--engine", engine,
                     "--json"]) == 0
        reports.append(json.loads(capsys.readouterr().out))
    plain, fused = reports
    assert fused["is_nll"] == pytest.approx(plain["is_nll"], rel=1e-6)
    assert fused["test_nelbo"] == plain["test_nelbo"] and fused["is_n"] == plain["is_n"] == 40


def test_evaluate_missing_checkpoint(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nope.npz")]) == 2
    assert "no such checkpoint" in one_error_line(capsys, "evaluate")


# ------------------------------------------------------------------ sample
def test_sample_writes_a_png_grid(trained, tmp_path, capsys):
    path = tmp_path / "grid" / "samples.png"
    assert main(["sample", str(trained), "--n", "10", "--cols", "5", "--scale", "3", "--out", str(path)]) == 0
    image = imread(path)
    assert image.shape[:2] == (3 * (2 * 30 + 2), 3 * (5 * 30 + 2))   # 28-pixel tiles, 2-pixel gaps, x3
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("extra", [["--n", "0"], ["--out", "samples.jpg"], ["--seed", "x"],
                                   ["--scale", "0"]])
def test_sample_bad_arguments(trained, tmp_path, capsys, extra):
    with pytest.raises(SystemExit) as exit_:
        main(["sample", str(trained), *extra])
    assert exit_.value.code == 2
    one_error_line(capsys, "sample")


def test_sample_refuses_a_grid_of_gigapixels(trained, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["sample", str(trained), "--n", "64", "--scale", "100000", "--out", str(tmp_path / "s.png")])
    assert exit_.value.code == 2
    assert "megapixels" in one_error_line(capsys, "sample")
    assert not (tmp_path / "s.png").exists()


def test_not_enough_memory_is_one_line(data_dir, tmp_path, capsys):
    """A network of 10^9 hidden units needs terabytes: one line and exit 2, not a traceback."""
    assert main(train_args(data_dir, tmp_path / "run", "--hidden", "1000000000")) == 2
    assert "not enough memory" in one_error_line(capsys, "train")


def test_a_run_directory_given_as_the_checkpoint_gets_a_hint(trained, capsys):
    assert main(["evaluate", str(trained.parent), "--is-k", "0"]) == 2
    assert "did you mean" in one_error_line(capsys, "evaluate")


def test_evaluate_matches_the_training_log_by_default(data_dir, tmp_path, capsys):
    """Without --batch-size the evaluation uses the run's eval_batch: the logged number exactly
    (another batch size sums the float32 batch means in another order)."""
    assert main(train_args(data_dir, tmp_path, "--eval-batch", "7")) == 0
    logged = load_checkpoint(tmp_path / "checkpoint.npz")["history"][-1]["test_nelbo"]
    capsys.readouterr()
    reports = []
    for extra in ([], ["--batch-size", "40"]):
        assert main(["evaluate", str(tmp_path / "checkpoint.npz"), "--is-k", "0", "--json", *extra]) == 0
        reports.append(json.loads(capsys.readouterr().out)["test_nelbo"])
    assert reports[0] == logged
    assert reports[1] == pytest.approx(logged, rel=1e-5) and reports[1] != logged


# ------------------------------------------------------------------ the entry points
def test_every_command_has_help(capsys):
    for command in ("train", "resume", "evaluate", "sample"):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
        assert f"usage: scratchvae {command}" in capsys.readouterr().out


def test_no_command_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        main([])
    assert exit_.value.code == 2
    assert "required: COMMAND" in one_error_line(capsys, "")


def test_python_dash_m_runs_the_command():
    result = subprocess.run([sys.executable, "-m", "scratchvae", "train", "--lr", "0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("scratchvae train: error: argument --lr") and result.stdout == ""


def test_ctrl_c_saves_a_checkpoint_and_exits_with_130(data_dir, tmp_path):
    """The real thing: SIGINT to a running `python -m scratchvae train`, then resume it."""
    command = [sys.executable, "-m", "scratchvae", *train_args(data_dir, tmp_path)]
    command[command.index("--epochs") + 1] = "100000"                 # still running when stopped
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        for line in process.stderr:                                   # wait until an epoch has ended
            if line.startswith("epoch"):
                break
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "interrupted by SIGINT at" in err and "scratchvae resume" in err and "Traceback" not in err
    checkpoint = load_checkpoint(tmp_path / "checkpoint.npz")
    done = len(checkpoint["history"])
    assert done >= 1
    assert main(["resume", str(tmp_path / "checkpoint.npz"), "--epochs", str(done + 1)]) == 0
    assert len(load_checkpoint(tmp_path / "checkpoint.npz")["history"]) == done + 1


# ------------------------------------------------------------------ reliability
@pytest.mark.parametrize("split, same", [("test", True), ("test[:30]", False), ("test[5:]", False)])
def test_evaluate_says_when_the_images_are_not_the_runs(trained, capsys, split, same):
    assert main(["evaluate", str(trained), "--test-split", split, "--is-k", "0", "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["same_data_as_training"] is same
    assert ("not the images the run was tested on" in captured.err) is not same


def test_sample_replaces_its_png_atomically_and_keeps_it_when_the_write_fails(trained, tmp_path, capsys,
                                                                               monkeypatch):
    png = tmp_path / "s.png"
    assert main(["sample", str(trained), "--n", "4", "--out", str(png)]) == 0
    before = png.read_bytes()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr("matplotlib.image.imsave", full_disk)
    assert main(["sample", str(trained), "--n", "9", "--out", str(png)]) == 1
    assert "No space left on device" in one_error_line(capsys, "sample")
    assert png.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["s.png"]


def test_a_second_training_into_a_running_runs_directory_is_one_line(data_dir, tmp_path, capsys):
    from scratchvae.machinery.run_dir import exclusive
    with exclusive(tmp_path):                                   # as if another run held it
        assert main(train_args(data_dir, tmp_path, "--overwrite")) == 2
    assert "another training is writing to" in one_error_line(capsys, "train")
    assert not (tmp_path / "checkpoint.npz").exists()


# ------------------------------------------------------------------ the model types (--model)
@pytest.fixture(scope="module")
def trained_types(data_dir, tmp_path_factory):
    """An autoencoder's and a conditional VAE's run directories, trained once through the CLI."""
    runs = {}
    for model in ("autoencoder", "cvae"):
        out = tmp_path_factory.mktemp(model)
        assert main(train_args(data_dir, out, "--model", model)) == 0
        runs[model] = out / "checkpoint.npz"
    return runs


def test_train_each_model_type_and_say_what_was_trained(trained_types, capsys):
    from scratchvae.chapters.autoencoder import Autoencoder
    from scratchvae.machinery.checkpoint import load_model
    from scratchvae.chapters.cvae import CVAE
    for model, cls in (("autoencoder", Autoencoder), ("cvae", CVAE)):
        checkpoint = load_checkpoint(trained_types[model])
        assert checkpoint["model"]["type"] == model == checkpoint["config"]["model"]
        assert type(load_model(checkpoint)) is cls and len(checkpoint["history"]) == 2
    history = load_checkpoint(trained_types["autoencoder"])["history"]
    assert "test_nelbo" not in history[-1] and history[-1]["test_rec"] > 0


def test_the_autoencoders_run_ends_with_its_reconstruction(data_dir, tmp_path, capsys):
    assert main(train_args(data_dir, tmp_path, "--model", "autoencoder", "--epochs", "1")) == 0
    out, err = capsys.readouterr()
    assert "epoch 1: test reconstruction -log p(x|z)" in out and "autoencoder.py" in err


@pytest.mark.parametrize("extra, named", [
    (["--model", "autoencoder", "--beta", "0.5"], "beta must be 1 with model 'autoencoder'"),
    (["--model", "autoencoder", "--warmup-epochs", "2"], "warmup_epochs must be 0 with model 'autoencoder'"),
    (["--model", "autoencoder", "--samples", "2"], "n_samples must be 1 with model 'autoencoder'"),
    (["--model", "cvae", "--engine", "fused"], "engine must be 'plain' with model 'cvae'"),
    (["--model", "cvae", "--objective", "iwae"], "objective must be 'elbo' with model 'cvae'"),
    (["--model", "gan"], "--model"),
])
def test_what_a_model_type_cannot_do_is_one_line_and_exit_2(data_dir, tmp_path, capsys, extra, named):
    with pytest.raises(SystemExit) as exit_:
        main(train_args(data_dir, tmp_path, *extra))
    assert exit_.value.code == 2
    assert named in one_error_line(capsys, "train")
    assert not os.listdir(tmp_path)


def test_a_cvae_without_label_files_is_one_line(data_dir, tmp_path, capsys):
    for name in os.listdir(data_dir):
        if "labels" not in name:
            os.symlink(data_dir / name, tmp_path / name)
    assert main(train_args(tmp_path, tmp_path / "run", "--model", "cvae")) == 2
    assert "labels-idx1-ubyte" in one_error_line(capsys, "train")


def test_resume_a_cvae(trained_types, tmp_path, capsys):
    import shutil
    shutil.copy(trained_types["cvae"], tmp_path / "checkpoint.npz")
    assert main(["resume", str(tmp_path / "checkpoint.npz"), "--epochs", "3"]) == 0
    assert "epoch 3: test negative ELBO" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "checkpoint.npz")["model"]["type"] == "cvae"


def test_evaluate_an_autoencoder_reports_its_reconstruction_and_says_why_nothing_else(trained_types, capsys):
    checkpoint = trained_types["autoencoder"]
    assert main(["evaluate", str(checkpoint), "--json"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["model"] == "autoencoder" and report["is_nll"] is None
    assert report["test_rec"] == load_checkpoint(checkpoint)["history"][-1]["test_rec"]   # the log's number
    assert err.count("\n") == 1 and "no importance-sampled -log p(x)" in err
    assert main(["evaluate", str(checkpoint)]) == 0
    out, _ = capsys.readouterr()
    assert "an autoencoder" in out and "test reconstruction -log p(x|z)" in out and "ELBO" not in out


@pytest.mark.parametrize("model, why", [("autoencoder", "this model has none (no q(z|x))"),
                                        ("cvae", "this model's is CVAE.log_weights")])
def test_evaluate_fused_refuses_the_other_model_types_in_one_line(trained_types, capsys, model, why):
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", str(trained_types[model]), "--engine", "fused"])
    assert exit_.value.code == 2
    err = one_error_line(capsys, "evaluate")
    assert "--engine fused cannot evaluate this model" in err and why in err and "--engine plain" in err


def test_evaluate_a_cvae_gives_both_bounds_on_log_p_x_given_y(trained_types, capsys):
    checkpoint = trained_types["cvae"]
    assert main(["evaluate", str(checkpoint), "--is-k", "20", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    last = load_checkpoint(checkpoint)["history"][-1]
    assert report["model"] == "cvae" and report["conditional"] is True
    assert report["test_nelbo"] == last["test_nelbo"] and report["same_data_as_training"] is True
    assert report["is_n"] == 40 and np.isfinite(report["is_nll"])
    assert main(["evaluate", str(checkpoint), "--is-k", "20"]) == 0
    out = capsys.readouterr().out
    assert "given the test labels" in out and "test -log p(x|y)" in out


def _captured_grid(monkeypatch):
    import scratchvae.machinery.cli as cli
    grids = []
    real = cli.write_grid_png
    monkeypatch.setattr(cli, "write_grid_png", lambda images, path, **kw: grids.append(images) or real(images, path, **kw))
    return grids


def test_sample_digit_7_draws_the_models_own_sevens(trained_types, tmp_path, capsys, monkeypatch):
    from scratchvae.machinery.checkpoint import load_model
    grids = _captured_grid(monkeypatch)
    path = tmp_path / "sevens.png"
    assert main(["sample", str(trained_types["cvae"]), "--digit", "7", "--n", "6", "--seed", "4",
                 "--out", str(path)]) == 0
    model = load_model(trained_types["cvae"])
    sevens = model.sample(6, 7, np.random.default_rng(4))
    np.testing.assert_array_equal(grids[0], np.clip(sevens, 0, 1).reshape(6, 28, 28))
    z = np.random.default_rng(4).standard_normal((6, 2), dtype=np.float32)    # z ~ N(0, I), label 7
    np.testing.assert_array_equal(sevens, model.decode_mean(z, np.full(6, 7)))
    assert imread(path).shape[:2] == (2 * (2 * 30 + 2), 2 * (3 * 30 + 2))
    assert "of class 7" in capsys.readouterr().out


def test_sample_a_cvae_without_digit_draws_one_row_per_class(trained_types, tmp_path, capsys, monkeypatch):
    from scratchvae.machinery.checkpoint import load_model
    grids = _captured_grid(monkeypatch)
    assert main(["sample", str(trained_types["cvae"]), "--n", "30", "--seed", "2",
                 "--out", str(tmp_path / "all.png")]) == 0
    model = load_model(trained_types["cvae"])
    z = np.random.default_rng(2).standard_normal((3, 2), dtype=np.float32)   # ceil(30 / 10) columns
    for y in range(10):                                                       # row y: the same z, label y
        np.testing.assert_array_equal(grids[0][3 * y:3 * y + 3],
                                      np.clip(model.decode_mean(z, np.full(3, y)), 0, 1).reshape(3, 28, 28))
    assert "10 rows, one per class" in capsys.readouterr().out


@pytest.mark.parametrize("which, digit, named", [
    ("vae", "7", "--digit needs a conditional VAE"), ("autoencoder", "7", "holds an autoencoder"),
    ("cvae", "10", "--digit must be a class 0..9"), ("cvae", "-1", "--digit"),
])
def test_sample_digit_errors_are_one_line_and_exit_2(trained, trained_types, tmp_path, capsys, which, digit, named):
    checkpoint = trained if which == "vae" else trained_types[which]
    with pytest.raises(SystemExit) as exit_:
        main(["sample", str(checkpoint), "--digit", digit, "--out", str(tmp_path / "s.png")])
    assert exit_.value.code == 2
    assert named in one_error_line(capsys, "sample")
    assert not (tmp_path / "s.png").exists()


def test_explore_refuses_what_it_cannot_show_in_one_line(trained_types, tmp_path, capsys):
    for model, article in (("autoencoder", "an autoencoder"), ("cvae", "a conditional VAE")):
        assert main(["explore", str(trained_types[model]), "--out", str(tmp_path / "e.html")]) == 2
        assert f"holds {article}" in one_error_line(capsys, "explore")
    assert not (tmp_path / "e.html").exists()


def test_sample_an_autoencoder_decodes_prior_draws(trained_types, tmp_path, capsys, monkeypatch):
    from scratchvae.machinery.checkpoint import load_model
    grids = _captured_grid(monkeypatch)
    assert main(["sample", str(trained_types["autoencoder"]), "--n", "4", "--seed", "1",
                 "--out", str(tmp_path / "ae.png")]) == 0
    expected = load_model(trained_types["autoencoder"]).sample(4, np.random.default_rng(1))
    np.testing.assert_array_equal(grids[0], np.clip(expected, 0, 1).reshape(4, 28, 28))
