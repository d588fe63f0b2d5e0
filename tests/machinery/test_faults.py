"""Fault injection: kill -9 at random moments, SIGTERM/SIGHUP, two runs into one directory, a full disk.

Each test runs real training in a child process (the training API on synthetic images, so
no data files are needed). The default run tries a few random moments; ``pytest -m slow``
tries many (the counts are in docs/reliability.md).
"""
import json
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from scratchvae.machinery.checkpoint import load_checkpoint
from scratchvae.machinery.cli import write_grid_png
from scratchvae.machinery.runner import ConfigError, TrainConfig, train

KILL_TRIES_FAST, KILL_TRIES_SLOW = 4, 40
REPO = Path(__file__).resolve().parents[2]


def images(n, D=36, seed=0):
    return (np.random.default_rng(seed).random((n, D)) * 255).astype(np.uint8)


TRAIN, TEST = images(160), images(40, seed=1)


def config(out, **changes):
    base = dict(hidden=[12], latent=3, batch_size=16, epochs=20, lr=3e-3, binarize="dynamic",
                eval_batch=20, seed=5, out=str(out))
    return TrainConfig(**{**base, **changes})


# The child: train (or resume) with every step slowed by `pause` seconds -- the numbers are
# unchanged, only the timing, so that signals land mid-run -- and exit as the CLI does.
CHILD = textwrap.dedent("""
    import sys, time, json
    import numpy as np
    sys.path[:0] = [{tests!r}, {tests!r} + "/.."]
    from test_faults import TRAIN, TEST, config
    import scratchvae.machinery.runner as t
    batches = t.iterate_batches
    def slow_batches(*args, **kwargs):
        for batch in batches(*args, **kwargs):
            time.sleep({pause})
            yield batch
    t.iterate_batches = slow_batches
    out, epochs, resume = {out!r}, {epochs}, {resume!r}
    try:
        t.train(config(out, epochs=epochs), resume=resume, train_images=TRAIN, test_images=TEST,
                overwrite=resume is None)
    except t.TrainingInterrupted as e:
        sys.exit(128 + int(e.signum))
""")


def start(out, epochs=20, pause=0.002, resume=None):
    script = CHILD.format(tests=str(REPO / "tests" / "machinery"), pause=pause, out=str(out), epochs=epochs,
                          resume=None if resume is None else str(resume))
    return subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_epoch(process):
    """Read the child's log until its first epoch line (a checkpoint exists from then on)."""
    for line in process.stderr:
        if line.startswith("epoch"):
            return line
    raise AssertionError(f"the child ended before an epoch: exit {process.wait()}")


def check_consistent(out):
    """After any crash: the checkpoint loads, and history.json is never behind it."""
    path = out / "checkpoint.npz"
    if not path.exists():
        return 0
    checkpoint = load_checkpoint(path)                       # raises if corrupt
    if (out / "history.json").exists():
        on_disk = json.loads((out / "history.json").read_text())
        assert len(on_disk) >= len(checkpoint["history"])
        assert on_disk[:len(checkpoint["history"])] == checkpoint["history"]
    return len(checkpoint["history"])


def kill_at_random_moments(tmp_path, tries, seed):
    rng = random.Random(seed)
    out = tmp_path / "run"
    for attempt in range(tries):
        done = check_consistent(out)
        process = start(out, epochs=done + 3, pause=0.0005,
                        resume=out / "checkpoint.npz" if done else None)
        time.sleep(rng.uniform(0.6, 2.0))                     # import takes ~0.5 s; then training and saving
        process.kill()                                        # SIGKILL: no handler, no cleanup
        process.communicate()
        check_consistent(out)
    done = check_consistent(out)                              # the next start cleans up after them
    if done:
        train(config(out, epochs=done + 1), resume=out / "checkpoint.npz", train_images=TRAIN,
              test_images=TEST, log=False)
    else:
        train(config(out, epochs=1), train_images=TRAIN, test_images=TEST, log=False, overwrite=True)
    assert not list(out.glob(".*.tmp")), list(out.glob(".*"))
    assert check_consistent(out) == max(done + 1, 1)


def test_kill_9_at_random_moments_never_corrupts_a_checkpoint(tmp_path):
    kill_at_random_moments(tmp_path, KILL_TRIES_FAST, seed=0)


@pytest.mark.slow
def test_kill_9_at_many_random_moments_never_corrupts_a_checkpoint(tmp_path):
    kill_at_random_moments(tmp_path, KILL_TRIES_SLOW, seed=1)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_save_and_resume_bit_for_bit(tmp_path, signum):
    out = tmp_path / "run"
    process = start(out, epochs=12)
    wait_for_epoch(process)
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, err
    assert f"interrupted by {signal.Signals(signum).name}" in err and "Traceback" not in err
    stopped = load_checkpoint(out / "checkpoint.npz")
    assert len(stopped["history"]) < 12
    resumed, history = train(config(out, epochs=12), resume=out / "checkpoint.npz",
                             train_images=TRAIN, test_images=TEST, log=False)
    straight, straight_history = train(config(tmp_path / "straight", epochs=12), train_images=TRAIN,
                                       test_images=TEST, log=False)
    assert np.array_equal(resumed.flat_params, straight.flat_params)
    timing = ("img_per_s", "seconds")
    assert ([{k: v for k, v in r.items() if k not in timing} for r in history]
            == [{k: v for k, v in r.items() if k not in timing} for r in straight_history])


def test_two_trainings_into_one_directory_one_refuses_and_kill_9_leaves_no_stale_lock(tmp_path):
    out = tmp_path / "run"
    first = start(out, epochs=50, pause=0.005)
    try:
        wait_for_epoch(first)
        for attempt in (dict(overwrite=True), dict(resume=out / "checkpoint.npz")):
            with pytest.raises(ConfigError, match=f"another training is writing to {out} "
                                                  rf"\(process {first.pid}\)"):
                train(config(out, epochs=60), train_images=TRAIN, test_images=TEST, log=False, **attempt)
    finally:
        first.kill()
        first.communicate()
    done = check_consistent(out)                              # after kill -9 the lock is free
    train(config(out, epochs=done + 1), resume=out / "checkpoint.npz", train_images=TRAIN,
          test_images=TEST, log=False)
    assert check_consistent(out) == done + 1


def test_a_full_disk_leaves_every_earlier_file_intact(small_disk):
    """One checkpoint of ~240 KB fits, a second beside it does not: the save fails, the first stays."""
    out = small_disk / "run"
    big = dict(hidden=[128], latent=8, batch_size=32, epochs=1, eval_batch=40)
    wide_train, wide_test = images(160, D=64), images(40, D=64, seed=1)
    train(config(out, **big), train_images=wide_train, test_images=wide_test, log=False)
    before = (out / "checkpoint.npz").read_bytes()
    grid = out.parent / "samples.png"
    write_grid_png(np.zeros((4, 8, 8)), grid)
    picture = grid.read_bytes()
    with pytest.raises(OSError):
        train(config(out, **{**big, "epochs": 2}), resume=out / "checkpoint.npz",
              train_images=wide_train, test_images=wide_test, log=False)
    assert (out / "checkpoint.npz").read_bytes() == before
    assert check_consistent(out) == 1
    assert not list(out.glob(".*.tmp"))
    filler = out.parent / "filler"                            # now leave no room for a picture
    try:
        with open(filler, "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError:                                           # full (maybe already)
        pass
    with pytest.raises(OSError):
        write_grid_png(np.ones((64, 8, 8)), grid, scale=4)
    assert grid.read_bytes() == picture
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(".")) == []
