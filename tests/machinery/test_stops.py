"""Ctrl-C, SIGTERM and SIGHUP at every entry point, in every phase (machinery/stops.py, entry.py).

Each test starts a real command in a child process, holds it in one phase with a patch that
changes no number (helpers.CHILD: it says READY and waits), sends a signal, and checks what
a user sees: exit code 128 + signum, no traceback, a last line naming the signal, what was
saved kept, and no temporary file left behind. The models are tiny; each test takes a few
seconds, most of it Python's start.
"""
import signal

import numpy as np
import pytest

from scratchvae import VAE
from scratchvae.machinery.checkpoint import load_checkpoint
from scratchvae.machinery.runner import TrainConfig, train
from helpers import (assert_stopped, held_by_another_process, start_command, stop_with, tiny_checkpoint,
                     wait_for, write_dataset)

SIGINT, SIGTERM, SIGHUP = signal.SIGINT, signal.SIGTERM, signal.SIGHUP
DEMO = "demo.py"
BATCHES = "scratchvae.machinery.runner:iterate_batches"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("data")
    write_dataset(directory, n_train=50, n_test=30)
    return directory


# ------------------------------------------------------------------ the two rules, in this process
def test_at_once_raises_stopped_and_training_first_asks_then_stops():
    """at_once: a signal raises Stopped(signum). at_step_boundary, inside it: the first signal
    only sets the flag, the second raises; after it, at_once's rule is back; after both, Python's."""
    import os
    from scratchvae.machinery.stops import Stopped, at_once, at_step_boundary
    before = signal.getsignal(SIGTERM)
    with at_once():
        with pytest.raises(Stopped) as stopped:
            os.kill(os.getpid(), SIGHUP)
        assert stopped.value.signum == SIGHUP
    with at_once():
        with at_step_boundary() as flag:
            try:
                os.kill(os.getpid(), SIGTERM)
            except Stopped:                          # (a KeyboardInterrupt: it would end pytest's run)
                pytest.fail("the first signal in training stopped at once, before a checkpoint")
            assert flag.requested and flag.signum == SIGTERM
            with pytest.raises(Stopped) as stopped:
                os.kill(os.getpid(), SIGINT)
            assert stopped.value.signum == SIGINT
    with at_once():
        with at_step_boundary():
            pass
        with pytest.raises(Stopped):
            os.kill(os.getpid(), SIGTERM)
    assert signal.getsignal(SIGTERM) is before and signal.getsignal(SIGINT) is signal.default_int_handler


def test_a_stop_waits_for_the_end_of_a_held_block():
    """files.py creates a temporary file and writes its name down inside held(): a signal there
    stops the command only after both, so that the file is never left unnamed."""
    import os
    from scratchvae.machinery.stops import Stopped, at_once, held
    done = []
    with at_once():
        with pytest.raises(Stopped) as stopped:
            with held():
                os.kill(os.getpid(), SIGHUP)
                done.append("the name is written down")
        assert done and stopped.value.signum == SIGHUP


def test_a_handler_someone_else_installed_is_left_alone():
    """nohup ignores SIGHUP, a notebook has its own SIGINT handler: neither rule takes them over."""
    import os
    from scratchvae.machinery.stops import at_once, at_step_boundary
    seen = []
    previous = signal.signal(SIGHUP, signal.SIG_IGN), signal.signal(SIGINT, lambda s, f: seen.append(s))
    try:
        with at_once(), at_step_boundary() as flag:
            os.kill(os.getpid(), SIGHUP)
            os.kill(os.getpid(), SIGINT)
            assert not flag.requested and seen == [SIGINT]
    finally:
        signal.signal(SIGHUP, previous[0])
        signal.signal(SIGINT, previous[1])


def temporaries(directory):
    return sorted(str(p) for p in directory.rglob(".*.tmp"))


# ------------------------------------------------------------------ demo.py, phase by phase
def demo_argv(data, out):
    return ["--quick", "--no-download", "--data-dir", data, "--limit", "30", "--epochs", "1", "--out", out]


DEMO_PHASES = {   # phase: (patches that hold the demo there, the signal sent, a file the phase replaces)
    "evaluating": ("replace('demo:evaluate', wait)", SIGHUP, None),
    "writing a figure": ("during('demo:make_figures', 'os:fsync', wait)", SIGTERM, "1_reconstructions.png"),
    "the beta sweep's one-epoch run, at its last step":
        ("replace('demo:make_figures', stub); during('scratchvae.chapters.beta_sweep:train', "
         f"'{BATCHES}', gated(__import__('scratchvae.machinery.runner').machinery.runner.iterate_batches))",
         SIGTERM, None),
    "between two beta-sweep runs": ("replace('demo:make_figures', stub); "
                                    "replace('scratchvae.chapters.beta_sweep:measure', wait)", SIGINT, None),
    "writing figure 11": ("replace('demo:make_figures', stub); "
                          "during('scratchvae.chapters.beta_sweep:figure', 'os:fsync', wait)", SIGHUP,
                          "11_beta_sweep.png"),
    "writing the explorer": ("replace('demo:make_figures', stub); replace('demo:run_beta_sweep', stub); "
                             "during('demo:write_explorer', 'os:fsync', wait)", SIGTERM, "explorer.html"),
}


@pytest.mark.parametrize("phase", DEMO_PHASES)
def test_the_demo_stops_on_a_signal_in_every_phase(phase, data, tmp_path):
    """After training: the trained models stay, the file being written keeps its previous
    version, no temporary file stays, and the demo says which signal stopped it."""
    patches, signum, replaced = DEMO_PHASES[phase]
    out = tmp_path / "out"
    if replaced:
        out.mkdir()
        (out / replaced).write_bytes(b"an earlier run's file")
    process = start_command("demo", demo_argv(data, out), patches, go=tmp_path / "GO")
    wait_for(process)
    code, _, err = stop_with(process, signum, go=tmp_path / "GO")
    last = assert_stopped(code, err, DEMO, signum)
    assert "the trained models are in" in last and str(out / "autoencoder2d") in last, last
    for name in ("main", "latent2d", "autoencoder2d"):
        assert len(load_checkpoint(out / name / "checkpoint.npz")["history"]) == 1
    assert temporaries(out) == []
    if replaced:
        assert (out / replaced).read_bytes() == b"an earlier run's file"


def test_a_second_signal_while_the_demo_saves_stops_it_at_once(data, tmp_path):
    """The first SIGTERM in training asks for a checkpoint at the step boundary; a SIGHUP while
    it is written stops at once: exit 129, the partial write gone, no traceback."""
    out = tmp_path / "out"
    saving = "during('scratchvae.machinery.runner:save', 'os:fsync', wait)"
    process = start_command("demo", demo_argv(data, out)[:-3] + ["2", "--out", out],
                            f"replace('{BATCHES}', gated(__import__('scratchvae.machinery.runner')"
                            f".machinery.runner.iterate_batches)); {saving}", go=tmp_path / "GO")
    wait_for(process)                                             # in the first step of epoch 1
    process.send_signal(SIGTERM)
    (tmp_path / "GO").touch()                                     # the step ends; the save waits in fsync
    wait_for(process)
    code, _, err = stop_with(process, SIGHUP)
    assert_stopped(code, err, DEMO, SIGHUP)
    assert temporaries(out) == [] and not (out / "main" / "checkpoint.npz").exists()


def test_the_demo_holds_its_run_directories_from_its_check_to_its_end(data, tmp_path):
    """While the demo trains its first model, another training into its third run directory is
    refused, and a checkpoint put there meanwhile (not by a training) is not replaced."""
    from scratchvae.machinery.cli import main
    out = tmp_path / "out"
    process = start_command("demo", demo_argv(data, out), "replace('demo:train', lambda *args, "
                            "real=__import__('demo').train, **kwargs: (wait(), real(*args, **kwargs))[1])")
    try:
        wait_for(process)                                         # about to train the first model
        other = ["train", "--data-dir", data, "--no-download", "--train-split", "train", "--hidden", "4",
                 "--latent", "2", "--epochs", "1", "--out", out / "autoencoder2d", "--overwrite"]
        assert main([str(a) for a in other]) == 2
        (out / "autoencoder2d" / "checkpoint.npz").write_bytes(b"not the demo's")
    finally:
        code, _, err = stop_with(process, SIGTERM)
    assert_stopped(code, err, DEMO, SIGTERM)
    assert (out / "autoencoder2d" / "checkpoint.npz").read_bytes() == b"not the demo's"


def test_the_demo_does_not_replace_a_checkpoint_that_appears_while_it_runs(data, tmp_path):
    out = tmp_path / "out"
    process = start_command("demo", demo_argv(data, out), f"replace('{BATCHES}', gated("
                            "__import__('scratchvae.machinery.runner').machinery.runner.iterate_batches))",
                            go=tmp_path / "GO")
    try:
        wait_for(process)                                          # training the first model
        (out / "autoencoder2d" / "checkpoint.npz").write_bytes(b"someone else's")
        (tmp_path / "GO").touch()
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 2 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("demo.py: error: ") and "already exists" in err
    assert (out / "autoencoder2d" / "checkpoint.npz").read_bytes() == b"someone else's"


# ------------------------------------------------------------------ the chapters' commands
def test_the_beta_sweep_command_stops_in_a_training_step(data, tmp_path):
    out = tmp_path / "out"
    argv = ["--data-dir", data, "--no-download", "--train-split", "train", "--test-split", "test",
            "--betas", "0", "1", "--epochs", "1", "--out", out]
    process = start_command("scratchvae.chapters.beta_sweep", argv, f"replace('{BATCHES}', gated("
                            "__import__('scratchvae.machinery.runner').machinery.runner.iterate_batches))",
                            go=tmp_path / "GO")
    wait_for(process)
    code, stdout, err = stop_with(process, SIGTERM, go=tmp_path / "GO")
    assert_stopped(code, err, "python -m scratchvae.chapters.beta_sweep", SIGTERM)
    assert stdout == "" and not (out / "beta_sweep.json").exists()


def test_the_beta_sweep_command_stops_between_its_runs(data, tmp_path, signum=SIGHUP):
    argv = ["--data-dir", data, "--no-download", "--train-split", "train", "--test-split", "test",
            "--betas", "0", "1", "--epochs", "1", "--out", tmp_path / "out"]
    process = start_command("scratchvae.chapters.beta_sweep", argv,
                            "replace('scratchvae.chapters.beta_sweep:measure', wait)")
    wait_for(process)
    code, _, err = stop_with(process, signum)
    assert_stopped(code, err, "python -m scratchvae.chapters.beta_sweep", signum)


def test_the_cvae_command_saves_and_says_where_on_a_signal(data, tmp_path, signum=SIGINT):
    """`python -m scratchvae.chapters.cvae_run` itself (no patch): stopped after an epoch, it
    saves a checkpoint that the next run resumes."""
    import subprocess
    import sys
    out = tmp_path / "cvae"
    command = [sys.executable, "-m", "scratchvae.chapters.cvae_run", "--data-dir", str(data), "--train-split",
               "train", "--test-split", "test", "--hidden", "8", "--latent", "2", "--batch-size", "10",
               "--epochs", "100000", "--is-k", "2", "--limit", "2", "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(process, "epoch")
    code, stdout, err = stop_with(process, signum)
    last = assert_stopped(code, err, "python -m scratchvae.chapters.cvae_run", signum)
    assert f"the training state is saved in {out / 'checkpoint.npz'}" in last
    assert len(load_checkpoint(out / "checkpoint.npz")["history"]) >= 1 and stdout == ""


def test_the_autoencoder_command_stops_in_training_and_keeps_its_checkpoint(data, tmp_path):
    vae_config = TrainConfig(data_dir=str(data), train_split="train", test_split="test", hidden=[8], latent=2,
                             epochs=2, batch_size=10, download=False, out=str(tmp_path / "vae"))
    train(vae_config, log=False)
    out = tmp_path / "out"
    process = start_command("scratchvae.chapters.autoencoder_run", [tmp_path / "vae" / "checkpoint.npz", "--out", out],
                            "during('scratchvae.machinery.runner:_train', 'scratchvae.machinery.runner:"
                            "iterate_batches', gated(__import__('scratchvae.machinery.data').machinery.data"
                            ".iterate_batches))", go=tmp_path / "GO")
    wait_for(process)
    code, _, err = stop_with(process, SIGTERM, go=tmp_path / "GO")
    last = assert_stopped(code, err, "python -m scratchvae.chapters.autoencoder_run", SIGTERM)
    assert str(out / "autoencoder2d" / "checkpoint.npz") in last
    assert load_checkpoint(out / "autoencoder2d" / "checkpoint.npz")["progress"]["step_in_epoch"] == 1


def test_the_inference_command_stops_while_fitting(data, tmp_path):
    checkpoint = tiny_checkpoint(tmp_path / "checkpoint.npz", VAE(784, [4], 2, seed=0))
    process = start_command("scratchvae.chapters.inference", [checkpoint, "--data-dir", data, "--split", "test",
                                                              "--n", "2"],
                            "replace('scratchvae.chapters.inference:gaps_on_grid', wait)")
    wait_for(process)
    code, stdout, err = stop_with(process, SIGHUP)
    assert_stopped(code, err, "python -m scratchvae.chapters.inference", SIGHUP)
    assert stdout == ""


# ------------------------------------------------------------------ scratchvae's other commands
@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train(TrainConfig(data_dir=str(data), train_split="train", test_split="test", hidden=[8], latent=2, epochs=1,
                      batch_size=10, download=False, out=str(out)), log=False)
    return out / "checkpoint.npz"


@pytest.mark.parametrize("command, signum, written", [("explore", SIGTERM, "x.html"), ("sample", SIGHUP, "s.png")])
def test_explore_and_sample_leave_no_temporary_file_after_a_signal(command, signum, written, trained, tmp_path):
    """Stopped while their file is being written: the earlier file whole, no .x.html.XXXX.tmp."""
    target = tmp_path / written
    target.write_bytes(b"the earlier picture")
    process = start_command("scratchvae.machinery.cli", [command, trained, "--out", target],
                            "replace('os:fsync', wait)")
    wait_for(process)
    code, _, err = stop_with(process, signum)
    assert_stopped(code, err, f"scratchvae {command}", signum)
    assert target.read_bytes() == b"the earlier picture"
    assert sorted(p.name for p in tmp_path.iterdir()) == [written]


def test_evaluate_stops_on_sigterm_in_the_importance_sampling(trained, data):
    process = start_command("scratchvae.machinery.cli", ["evaluate", trained, "--data-dir", data, "--is-k", "5"],
                            "replace('scratchvae.machinery.cli:evaluate', wait)")
    wait_for(process)
    code, stdout, err = stop_with(process, SIGTERM)
    assert_stopped(code, err, "scratchvae evaluate", SIGTERM)
    assert stdout == ""


def test_the_workbook_checker_stops_on_a_signal(tmp_path):
    from scratchvae.machinery.cli import main
    assert main(["workbook", "start", str(tmp_path / "wb")]) == 0
    process = start_command("scratchvae.machinery.cli", ["workbook", "check", tmp_path / "wb"],
                            "replace('scratchvae.workbook.cli:Checker', wait)")
    wait_for(process)
    code, _, err = stop_with(process, SIGTERM)
    assert_stopped(code, err, "scratchvae workbook check", SIGTERM)


def test_a_signal_at_the_last_step_of_train_is_not_lost(data, tmp_path):
    """A stop asked for in the last step of the last epoch: training completes and saves, and
    the command still stops with 128 + signum instead of carrying on as if nothing came."""
    out = tmp_path / "run"
    argv = ["train", "--data-dir", data, "--no-download", "--hidden", "4", "--latent", "2", "--epochs", "1",
            "--batch-size", "64", "--out", out]                     # 50 images: one step per epoch
    process = start_command("scratchvae.machinery.cli", argv, f"replace('{BATCHES}', gated("
                            "__import__('scratchvae.machinery.runner').machinery.runner.iterate_batches))",
                            go=tmp_path / "GO")
    wait_for(process)
    code, stdout, err = stop_with(process, SIGHUP, go=tmp_path / "GO")
    assert_stopped(code, err, "scratchvae train", SIGHUP)
    assert "all 1 epochs done" in err and stdout == ""
    assert len(load_checkpoint(out / "checkpoint.npz")["history"]) == 1


def test_a_run_directory_held_elsewhere_refuses_the_demo(data, tmp_path):
    out = tmp_path / "out"
    with held_by_another_process(out / "latent2d", pid=777):
        process = start_command("demo", demo_argv(data, out))
        _, err = process.communicate(timeout=60)
    assert process.returncode == 2 and err.count("\n") == 1, err
    assert f"another training is writing to {out / 'latent2d'} (process 777)" in err
    assert not (out / "main" / "checkpoint.npz").exists()
    assert np.all([not p.exists() for p in (out / "1_reconstructions.png", out / "explorer.html")])
