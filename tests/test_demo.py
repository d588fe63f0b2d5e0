"""demo.py end to end: --quick on tiny data writes every figure and a summary; errors are one line."""
import gzip
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import scratchvae.machinery.cli as cli
from scratchvae.machinery.checkpoint import load_checkpoint
from scratchvae.pictures.figures import FIGURES

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import demo  # noqa: E402  (the top-level script)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_idx(path, array):
    """A gzip IDX file: 0 0 0x08 ndim, big-endian uint32 sizes, uint8 payload."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def tiny_data(tmp_path):
    """A synthetic dataset with both splits: blurry bars, one class per orientation and width."""
    rng = np.random.default_rng(0)
    directory = tmp_path / "data"
    directory.mkdir()
    for split, n in (("train", 120), ("t10k", 60)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 60, (n, 28, 28))
        for i, k in enumerate(labels):
            images[i, 4:24, 2 * k + 4:2 * k + 8] = 255 if k % 2 else 180
        write_idx(directory / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(directory / f"{split}-labels-idx1-ubyte.gz", labels)
    return directory


def test_quick_demo_writes_every_figure_a_summary_and_a_run_to_resume(tiny_data, tmp_path, capsys):
    out = tmp_path / "out"
    code = demo.main(["--quick", "--data-dir", str(tiny_data), "--out", str(out), "--epochs", "1",
                      "--limit", "50", "--no-download"])
    assert code == 0
    captured = capsys.readouterr()
    for i, name in enumerate(FIGURES, start=1):
        path = out / f"{i}_{name}.png"
        assert path.read_bytes()[:8] == PNG_MAGIC, name
        assert str(path) in captured.out
    assert "trained on 50 images" in captured.out and "tested on 50" in captured.out
    assert "negative ELBO" in captured.out and "-log p(x)      " in captured.out and "upper bound in expectation" in captured.out and "k = 20" in captured.out
    assert "wall time" in captured.out
    assert (out / "main" / "checkpoint.npz").is_file() and (out / "latent2d" / "checkpoint.npz").is_file()
    autoencoder = load_checkpoint(out / "autoencoder2d" / "checkpoint.npz")        # trained by train()
    latent2d = load_checkpoint(out / "latent2d" / "checkpoint.npz")
    assert autoencoder["model"]["type"] == "autoencoder" and autoencoder["model"]["latent_dim"] == 2
    assert ({k: v for k, v in autoencoder["config"].items() if k not in ("model", "out")}
            == {k: v for k, v in latent2d["config"].items() if k not in ("model", "out")})  # same data, budget, seed
    assert re.search(r"^test reconstruction -log p\(x\|z\) at the code, 2-D latent: autoencoder [\d.]+ nats, "
                     r"VAE [\d.]+ ", captured.out, re.MULTILINE)
    assert "training step: Autoencoder.loss_and_grads in scratchvae/chapters/autoencoder.py" in captured.err
    sweep = out / "11_beta_sweep.png"                                     # beta_sweep.py, after make_figures
    assert sweep.read_bytes()[:8] == PNG_MAGIC and str(sweep) in captured.out
    assert re.search(r"^beta 0: D [\d.]+  R [\d.]+", captured.err, re.MULTILINE)
    assert re.search(r"^beta 1: D [\d.]+  R [\d.]+", captured.err, re.MULTILINE)
    assert (out / "explorer.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")   # the 2-D model's page
    assert str(out / "explorer.html") in captured.out
    assert "epoch 1/1" in captured.err                                   # progress went to stderr
    assert "training step: VAE.loss_and_grads in scratchvae/vae.py" in captured.err   # the read-along code runs
    assert "figure 1/11: reconstructions" in captured.err and "== figure 11/11, what the KL term" in captured.err
    # --limit 50 of 120 training and 60 test images: the run records train[0:50] and test[0:50],
    # so resume loads those 50 (it refuses other images) and evaluate the run's own test images
    config = load_checkpoint(out / "main" / "checkpoint.npz")["config"]
    assert config["train_split"] == "train[0:50]" and config["test_split"] == "test[0:50]"
    assert "trained on 50 images (train[0:50])" in captured.out
    assert cli.main(["resume", str(out / "main" / "checkpoint.npz"), "--epochs", "2", "--no-download"]) == 0
    assert [r["epoch"] for r in load_checkpoint(out / "main" / "checkpoint.npz")["history"]] == [1, 2]
    assert cli.main(["evaluate", str(out / "main" / "checkpoint.npz"), "--is-k", "2", "--no-download"]) == 0
    assert "not the images the run was tested on" not in capsys.readouterr().err


def test_default_epochs_follow_the_image_budget():
    assert demo.default_epochs(60_000) == 10
    assert demo.default_epochs(9_000) == demo.MAX_EPOCHS
    assert demo.default_epochs(30_000) == 20


def test_missing_data_is_one_clear_line(tmp_path):
    env = {**os.environ, "MPLBACKEND": "", "DISPLAY": ""}                # headless, no backend preset
    result = subprocess.run([sys.executable, str(REPO / "demo.py"), "--quick", "--no-download",
                             "--data-dir", str(tmp_path), "--out", str(tmp_path / "o")],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("demo.py: error: ") and "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("signum, said", [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")])
def test_a_stop_signal_stops_cleanly_with_a_checkpoint(tiny_data, tmp_path, signum, said):
    """SIGINT (Ctrl-C) or SIGTERM during training: the trainer saves a checkpoint, the demo says
    which signal stopped it and exits with 128 + its number, as a shell reports it."""
    out = tmp_path / "o"
    process = subprocess.Popen([sys.executable, "-u", str(REPO / "demo.py"), "--quick", "--no-download",
                                "--data-dir", str(tiny_data), "--limit", "100", "--epochs", "100000",
                                "--out", str(out)], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        for line in process.stderr:                                       # wait until training runs
            if line.split()[:2] == ["epoch", "1/100000"]:
                break
        process.send_signal(signum)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 128 + signum
    assert f"demo stopped by {said} (training state saved" in err and "Traceback" not in err
    assert (out / "main" / "checkpoint.npz").is_file()


@pytest.mark.parametrize("extra, named", [(["--test-split", "test[:1]"], "mnist test[:1] holds one image"),
                                          (["--limit", "1"], "--limit 1")])
def test_one_test_image_is_one_line_before_any_training(tiny_data, tmp_path, capsys, extra, named):
    """It printed '+/- 0.00 s.e.' over one image after training every model (docs/reliability.md:
    one image where a standard error needs two is bad input)."""
    out = tmp_path / "out"
    assert demo.main(["--quick", "--data-dir", str(tiny_data), "--out", str(out), "--no-download", *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("demo.py: error: ") and named in err and "no standard error" in err
    assert not out.exists()


def test_a_bad_epoch_count_is_one_line_naming_that_option(tmp_path, capsys):
    assert demo.main(["--data-dir", str(tmp_path), "--out", str(tmp_path / "o"), "--epochs", "0"]) == 2
    err = capsys.readouterr().err
    assert err == "demo.py: error: --epochs must be a positive integer, got 0\n"


def test_the_demo_never_silently_replaces_checkpoints(tmp_path, capsys):
    """An earlier run's checkpoint (here a stand-in file) is refused unless --overwrite."""
    for name in ("main", "latent2d"):
        (tmp_path / "o" / name).mkdir(parents=True)
        (tmp_path / "o" / name / "checkpoint.npz").write_bytes(b"an earlier run")
        code = demo.main(["--data-dir", str(tmp_path), "--out", str(tmp_path / "o"), "--quick"])
        assert code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "already exists" in err and "--overwrite" in err
        assert (tmp_path / "o" / name / "checkpoint.npz").read_bytes() == b"an earlier run"
        shutil.rmtree(tmp_path / "o")
