"""One way in (machinery/entry.py, arguments.py): every entry point answers bad input, sizes
that cannot exist, unusable directories and a full disk with one line and its exit code.

The entry points: ``scratchvae`` (cli.main), ``python demo.py`` (demo.main) and the
chapters' ``python -m scratchvae.chapters.*`` (their main), all run in-process here.
"""
import errno
import os
import signal
import sys
from pathlib import Path

import pytest

import scratchvae.chapters.autoencoder_run as autoencoder_run
import scratchvae.chapters.beta_sweep as beta_sweep
import scratchvae.chapters.cvae_run as cvae_run
import scratchvae.chapters.inference as inference
import scratchvae.machinery.cli as cli
from helpers import assert_one_line_error, run_main, write_dataset

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
import demo  # noqa: E402  (the top-level script)

HUGE = "1" + "0" * 400                    # an integer beyond float range (and far beyond int64)
TINY = ["--hidden", "4", "--latent", "2", "--batch-size", "16", "--eval-batch", "50"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("data")
    write_dataset(directory, n_train=40, n_test=30)
    return directory


# ------------------------------------------------------------------ entry.run: how a command ends
def failing_with(error):
    def work(args):
        raise error
    return work


def endings():
    from scratchvae.machinery.checkpoint import CheckpointError
    from scratchvae.machinery.config import ConfigError
    from scratchvae.machinery.data import DataError
    from scratchvae.machinery.files import WriteError
    from scratchvae.machinery.runner import TrainingDiverged
    from scratchvae.machinery.stops import Stopped
    return [
        (DataError("no such split"), 2, "prog: error: no such split"),
        (CheckpointError("c.npz: damaged"), 2, "prog: error: c.npz: damaged"),
        (ConfigError("lr must be > 0"), 2, "prog: error: lr must be > 0"),
        (MemoryError("Unable to allocate 9 TiB"), 2,
         "prog: error: not enough memory (Unable to allocate 9 TiB); use a smaller --size"),
        (ValueError("array is too big; `arr.size * arr.dtype.itemsize` is larger than the maximum possible size."),
         2, "prog: error: not enough memory: arrays of these sizes cannot exist; use a smaller --size"),
        (ValueError("Maximum allowed dimension exceeded"), 2,
         "prog: error: not enough memory: arrays of these sizes cannot exist; use a smaller --size"),
        (TrainingDiverged("training diverged at step 3"), 1, "prog: error: training diverged at step 3"),
        (WriteError(errno.ENOSPC, "No space left on device", "out/f.png"), 1,
         "prog: error: cannot write out/f.png: No space left on device"),
        (WriteError(errno.ENOTDIR, "Not a directory", "a_file/f.png"), 2,
         "prog: error: cannot write a_file/f.png: Not a directory"),
        (PermissionError(errno.EACCES, "Permission denied", "d/x"), 1, "prog: error: d/x: Permission denied"),
        (Stopped(signal.SIGHUP), 129, "prog: stopped by SIGHUP"),
        (Stopped(signal.SIGTERM), 143, "prog: stopped by SIGTERM"),
        (KeyboardInterrupt(), 130, "prog: stopped by Ctrl-C (SIGINT)"),
    ]


def test_run_turns_every_ending_into_its_exit_code_and_one_line(capsys):
    from scratchvae.machinery.arguments import Parser
    from scratchvae.machinery.entry import run
    parser = Parser(prog="prog", memory_advice="use a smaller --size")
    for error, code, line in endings():
        assert run(parser, [], failing_with(error)) == code, error
        assert capsys.readouterr().err == line + "\n", error
    assert run(parser, [], lambda args: 0) == 0 and capsys.readouterr().err == ""


def test_run_lets_a_bug_show_its_traceback_and_removes_temporaries_either_way(tmp_path):
    """A ValueError that is not about memory, or a TypeError, is a bug: its traceback is the
    report. Whatever ends the command, the temporary files of unfinished writes go."""
    from scratchvae.machinery import files
    from scratchvae.machinery.arguments import Parser
    from scratchvae.machinery.entry import run

    def write_then_fail(error):
        def work(args):
            def write(f):
                f.write(b"half")
                raise error
            files.write_bytes_atomic(tmp_path / "x.png", write)
        return work
    for error, escapes in ((TypeError("a bug"), True), (ValueError("a bug"), True),
                           (OSError(errno.ENOSPC, "No space left on device"), False), (KeyboardInterrupt(), False)):
        if escapes:
            with pytest.raises(type(error)):
                run(Parser(prog="prog"), [], write_then_fail(error))
        else:
            run(Parser(prog="prog"), [], write_then_fail(error))
        assert os.listdir(tmp_path) == [] and files.TEMPORARIES == set(), error
    files.TEMPORARIES.add(str(tmp_path / ".y.tmp"))                   # as if a signal had cut a write short
    (tmp_path / ".y.tmp").write_bytes(b"")
    assert run(Parser(prog="prog"), [], failing_with(KeyboardInterrupt())) == 130
    assert os.listdir(tmp_path) == [] and files.TEMPORARIES == set()


# Every entry point: (main, its program name, the arguments it needs besides the flag tried)
ENTRY_POINTS = {
    "train": (cli.main, "scratchvae train", ["train", "--data-dir", "D", "--out", "O"]),
    "resume": (cli.main, "scratchvae resume", ["resume", "C"]),
    "evaluate": (cli.main, "scratchvae evaluate", ["evaluate", "C"]),
    "sample": (cli.main, "scratchvae sample", ["sample", "C", "--out", "s.png"]),
    "explore": (cli.main, "scratchvae explore", ["explore", "C", "--out", "e.html"]),
    "demo": (demo.main, "demo.py", ["--data-dir", "D", "--out", "O"]),
    "beta_sweep": (beta_sweep.main, "python -m scratchvae.chapters.beta_sweep", ["--data-dir", "D", "--out", "O"]),
    "cvae_run": (cvae_run.main, "python -m scratchvae.chapters.cvae_run", ["--data-dir", "D", "--out", "O"]),
    "inference": (inference.main, "python -m scratchvae.chapters.inference", ["C", "--data-dir", "D"]),
    "autoencoder_run": (autoencoder_run.main, "python -m scratchvae.chapters.autoencoder_run", ["C", "--out", "O"]),
    "workbook": (cli.main, "scratchvae workbook train", ["workbook", "train", "W", "--data-dir", "D", "--out", "O"]),
}
INTEGER_FLAGS = {
    "train": ["--hidden", "--latent", "--samples", "--iwae-k", "--batch-size", "--epochs", "--seed", "--eval-batch",
              "--threads"],
    "resume": ["--epochs", "--eval-batch", "--threads"],
    "evaluate": ["--is-k", "--limit", "--seed", "--batch-size"],
    "sample": ["--digit", "--n", "--cols", "--scale", "--seed"],
    "explore": ["--points"],
    "demo": ["--epochs", "--seed", "--limit"],
    "beta_sweep": ["--epochs", "--seed"],
    "cvae_run": ["--hidden", "--latent", "--epochs", "--batch-size", "--seed", "--is-k", "--limit"],
    "inference": ["--n", "--steps", "--seed"],
    "workbook": ["--hidden", "--latent", "--epochs", "--batch-size", "--seed"],
}


def entry_point(name, tmp_path, *extra):
    main, prog, argv = ENTRY_POINTS[name]
    where = {"D": tmp_path / "data", "O": tmp_path / "out", "C": tmp_path / "checkpoint.npz", "W": tmp_path / "wb"}
    return main, prog, [str(where.get(a, a)) for a in argv] + list(extra)


@pytest.mark.parametrize("name, flag", [(n, f) for n, flags in INTEGER_FLAGS.items() for f in flags])
def test_an_integer_beyond_float_range_is_one_line_for_every_integer_flag(name, flag, tmp_path, capsys,
                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    main, prog, argv = entry_point(name, tmp_path, flag, HUGE)
    code, err = run_main(main, argv, capsys)
    assert_one_line_error(code, err, prog, f"argument {flag}")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value, accepted", [(str(2 ** 63 - 1), True), (str(2 ** 63), False),
                                             ("-" + str(2 ** 63), False)])
def test_integer_flags_hold_what_int64_holds(value, accepted, capsys):
    parser = cli.build_parser()
    if accepted:
        assert parser.parse_args(["evaluate", "c.npz", "--seed", value]).seed == int(value)
        return
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "c.npz", "--seed", value])
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_an_empty_out_or_data_dir_is_refused(name, tmp_path, capsys, monkeypatch):
    """'' would mean the current directory: a run written where the user never asked."""
    monkeypatch.chdir(tmp_path)
    main, prog, argv = entry_point(name, tmp_path)
    for flag in ("--out", "--data-dir"):
        if flag not in argv:
            continue
        changed = list(argv)
        changed[changed.index(flag) + 1] = ""
        code, err = run_main(main, changed, capsys)
        assert_one_line_error(code, err, prog, f"argument {flag}", "expected a path")
    if name in ("resume", "evaluate", "sample", "explore", "inference", "autoencoder_run", "workbook"):
        changed = [a if a not in (str(tmp_path / "checkpoint.npz"), str(tmp_path / "wb")) else "" for a in argv]
        code, err = run_main(main, changed, capsys)
        assert_one_line_error(code, err, prog, "expected a path")
    assert sorted(os.listdir(tmp_path)) == []


@pytest.mark.parametrize("name, extra", [
    ("demo", ["--epochs", "x"]), ("demo", ["--train-split", "test[::0]"]), ("demo", ["--seed", "-1"]),
    ("demo", ["--limit", "0"]), ("demo", ["--bogus"]), ("demo", ["--out"]), ("demo", ["--binarize", "half"]),
    ("autoencoder_run", ["--bogus"]), ("autoencoder_run", ["--out"]),
    ("beta_sweep", ["--bogus"]), ("beta_sweep", ["--betas", "-1"]), ("beta_sweep", ["--test-split", "nine"]),
    ("cvae_run", ["--bogus"]), ("cvae_run", ["--activation", "cosine"]), ("cvae_run", ["--train-split", "x[1]"]),
    ("inference", ["--bogus"]), ("inference", ["--split", "test[::2]"]), ("inference", ["--dataset", "cifar"]),
])
def test_a_bad_option_is_one_line_without_the_usage_block(name, extra, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main, prog, argv = entry_point(name, tmp_path, *extra)
    code, err = run_main(main, argv, capsys)
    assert_one_line_error(code, err, prog, extra[0])            # the line names the option
    assert "usage:" not in err


def test_the_autoencoder_command_without_its_checkpoint_is_one_line(capsys):
    code, err = run_main(autoencoder_run.main, [], capsys)
    assert_one_line_error(code, err, "python -m scratchvae.chapters.autoencoder_run", "checkpoint")


# ------------------------------------------------------------------ arrays that cannot exist
@pytest.mark.parametrize("flag, value", [("--samples", 10 ** 18), ("--hidden", 10 ** 17), ("--latent", 10 ** 17),
                                         ("--iwae-k", 10 ** 18)])
def test_sizes_whose_arrays_cannot_exist_get_the_memory_message(flag, value, data, tmp_path, capsys):
    argv = ["train", "--data-dir", str(data), "--no-download", *TINY, "--epochs", "1", "--out", str(tmp_path)]
    if flag == "--iwae-k":
        argv += ["--objective", "iwae"]
    code, err = run_main(cli.main, argv + [flag, str(value)], capsys)
    assert_last_line_error(code, err, "scratchvae train", "not enough memory", flag)


def assert_last_line_error(code, err, prog, *words):
    """Exit 2, no traceback, and the last line (after the run's description) the error."""
    assert code == 2 and "Traceback" not in err, (code, err)
    assert_one_line_error(code, err.strip().splitlines()[-1], prog, *words)


@pytest.mark.parametrize("flag", ["--hidden", "--latent"])
def test_the_cvae_command_with_sizes_that_cannot_exist_gets_the_memory_message(flag, data, tmp_path, capsys):
    argv = ["--data-dir", str(data), "--train-split", "train", "--test-split", "test", "--hidden", "4",
            "--latent", "2", "--epochs", "1", "--is-k", "2", "--limit", "2", "--out", str(tmp_path / "o"),
            flag, str(10 ** 17)]
    code, err = run_main(cvae_run.main, argv, capsys)
    assert_last_line_error(code, err, "python -m scratchvae.chapters.cvae_run", "not enough memory", flag)


# ------------------------------------------------------------------ a data directory the user cannot list
@pytest.fixture
def unlistable(tmp_path, monkeypatch):
    """D/mnist holds the data, but D has mode 000. Root reads every directory whatever its mode,
    so there the kernel's answers for such a directory are given by hand: stat of D itself
    works, of anything inside it EACCES, and D may not be listed."""
    directory = tmp_path / "D"
    write_dataset(directory / "mnist", n_train=20, n_test=20)
    directory.chmod(0)
    if os.geteuid() == 0:
        inside, stat, access = str(directory) + os.sep, os.stat, os.access

        def denied(path, *args, **kwargs):
            if os.fspath(path).startswith(inside):
                raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
            return stat(path, *args, **kwargs)
        monkeypatch.setattr(os, "stat", denied)
        monkeypatch.setattr(os, "access", lambda path, mode, **k: (os.fspath(path) != str(directory)
                                                                   and access(path, mode, **k)))
    yield directory
    directory.chmod(0o755)


@pytest.mark.parametrize("name", ["train", "demo", "beta_sweep", "cvae_run"])
def test_a_data_directory_the_user_cannot_list_is_exit_2_naming_it(name, unlistable, tmp_path, capsys):
    main, prog, argv = entry_point(name, tmp_path, *["--no-download"] * (name != "cvae_run"))
    argv = [str(unlistable) if a == str(tmp_path / "data") else a for a in argv]
    code, err = run_main(main, argv, capsys)
    assert_one_line_error(code, err, prog, f"data directory {unlistable}: permission denied")
    assert f"{unlistable}{os.sep}mnist" not in err


def test_an_unlistable_scratchvae_data_dir_is_named_with_its_reason(unlistable, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SCRATCHVAE_DATA_DIR", str(unlistable))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    code, err = run_main(cli.main, ["train", "--no-download", "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "Traceback" not in err, err
    assert f"$SCRATCHVAE_DATA_DIR {unlistable} (permission denied: this user may not list it)" in " ".join(err.split())


# ------------------------------------------------------------------ a full disk names the file
def fill(disk):
    """Leave no free byte on the tmpfs ``disk``."""
    try:
        with open(disk / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError:
        pass


@pytest.mark.parametrize("name", ["demo", "train"])
def test_a_full_disk_is_one_line_naming_the_file(name, small_disk, data, capsys):
    fill(small_disk)
    out = small_disk / "out"
    main, prog, argv = ENTRY_POINTS[name]
    argv = [str(data) if a == "D" else str(out) if a == "O" else a for a in argv] + ["--no-download"]
    code, err = run_main(main, argv, capsys)
    lock = out / "main" / ".scratchvae.lock" if name == "demo" else out / ".scratchvae.lock"
    assert (code, err) == (1, f"{prog}: error: cannot write {lock}: No space left on device\n")


@pytest.fixture
def disk_full_for(monkeypatch):
    """disk_full_for("NAME"): from now on, writing a file called NAME fails as on a full disk (in
    the fsync of its temporary file, /proc/self/fd tells which); every other write succeeds."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd to tell which file a write is for")
    fsync = os.fsync

    def full_for(name):
        def full(fd):
            if name in os.path.basename(os.readlink(f"/proc/self/fd/{fd}")):
                raise OSError(errno.ENOSPC, "No space left on device")
            return fsync(fd)
        monkeypatch.setattr(os, "fsync", full)
    return full_for


def earlier(out, *names):
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        (out / name).write_bytes(b"an earlier run's " + name.encode())


def assert_kept(out, *names):
    for name in names:
        assert (out / name).read_bytes() == b"an earlier run's " + name.encode(), name
    assert not list(out.rglob(".*.tmp"))


@pytest.mark.parametrize("failing", ["11_beta_sweep.png", "beta_sweep.json"])
def test_the_beta_sweep_on_a_full_disk_keeps_the_earlier_figure_and_json(failing, data, tmp_path, capsys,
                                                                         disk_full_for):
    out = tmp_path / "out"
    earlier(out, "11_beta_sweep.png", "beta_sweep.json")
    disk_full_for(failing)
    code, err = run_main(beta_sweep.main, ["--data-dir", str(data), "--train-split", "train", "--test-split",
                                           "test", "--betas", "1", "--epochs", "1", "--out", str(out)], capsys)
    prog = "python -m scratchvae.chapters.beta_sweep"
    assert (code, err.splitlines()[-1]) == (1, f"{prog}: error: cannot write {out / failing}: No space left on device")
    assert_kept(out, failing)


def test_the_cvae_command_on_a_full_disk_keeps_its_earlier_results(data, tmp_path, capsys, disk_full_for):
    out = tmp_path / "out"
    earlier(out, "cvae_results.json")
    disk_full_for("cvae_results.json")
    code, err = run_main(cvae_run.main, ["--data-dir", str(data), "--train-split", "train", "--test-split", "test",
                                         "--hidden", "4", "--latent", "2", "--epochs", "1", "--is-k", "2",
                                         "--limit", "2", "--out", str(out)], capsys)
    prog = "python -m scratchvae.chapters.cvae_run"
    assert (code, err.splitlines()[-1]) == (1, f"{prog}: error: cannot write {out / 'cvae_results.json'}: "
                                               "No space left on device")
    assert_kept(out, "cvae_results.json")


def test_the_demo_on_a_full_disk_keeps_the_earlier_figure_11_and_names_it(data, tmp_path, capsys, monkeypatch,
                                                                          disk_full_for):
    monkeypatch.setattr(demo, "make_figures", lambda *args, **kwargs: {})     # figures 1-10: their own tests
    out = tmp_path / "out"
    earlier(out, "11_beta_sweep.png")
    disk_full_for("11_beta_sweep.png")
    code, err = run_main(demo.main, ["--quick", "--no-download", "--data-dir", str(data), "--limit", "20",
                                     "--epochs", "1", "--out", str(out)], capsys)
    assert (code, err.splitlines()[-1]) == (1, f"demo.py: error: cannot write {out / '11_beta_sweep.png'}: "
                                               "No space left on device")
    assert_kept(out, "11_beta_sweep.png")
