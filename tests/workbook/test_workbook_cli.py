"""`scratchvae workbook start | check | train` (scratchvae/workbook/cli.py), run in-process through
the `scratchvae` command: what a learner sees, the exit codes, and bad input as one line."""
import pytest

from helpers import write_idx
from mistakes import MISTAKES
from scratchvae.machinery.cli import main
from scratchvae.machinery.data import FILES
from scratchvae.workbook.checks import EXERCISES
from scratchvae.workbook.cli import EXERCISE_DIR
from workbooks import SOLUTIONS, workbook_from


def flat(text):
    """The report with its line wrapping undone."""
    return " ".join(text.split())


def test_start_writes_the_blanks_and_never_overwrites(tmp_path, capsys):
    workbook = tmp_path / "my workbook"
    assert main(["workbook", "start", str(workbook)]) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in workbook.iterdir()) == sorted(e.file for e in EXERCISES)
    assert (workbook / "ex3_kl.py").read_text() == (EXERCISE_DIR / "ex3_kl.py").read_text()
    assert out.startswith(f"wrote 8 exercise files into {workbook}:\n  ex1_layers.py ")
    assert out.endswith(f"then: scratchvae workbook check {workbook} 1\n")
    (workbook / "ex3_kl.py").write_text("# my own work\n")
    (workbook / "ex6_adam.py").unlink()
    assert main(["workbook", "start", str(workbook)]) == 0
    out = capsys.readouterr().out
    assert (workbook / "ex3_kl.py").read_text() == "# my own work\n"
    assert (workbook / "ex6_adam.py").read_text() == (EXERCISE_DIR / "ex6_adam.py").read_text()
    assert out.startswith("wrote 1 exercise file into")
    assert "kept your ex1_layers.py, ex2_bernoulli.py, ex3_kl.py, ex4_reparameterise.py, ex5_vae.py, " \
           "ex7_inference.py, ex8_iwae.py (start never overwrites a file)" in out


def test_a_blank_workbook_is_not_written_yet_and_exits_1(tmp_path, capsys):
    main(["workbook", "start", str(tmp_path)])
    capsys.readouterr()
    assert main(["workbook", "check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    for e in EXERCISES:
        assert f"exercise {e.number} of 8 ({e.file}): {e.title}\nexercise {e.number}: not written yet\n" in out
    assert out.endswith("0 of 8 exercises passed; next: exercise 1 (ex1_layers.py)\n")


def test_the_solutions_pass_and_exit_0(tmp_path, capsys):
    assert main(["workbook", "check", str(workbook_from(SOLUTIONS, tmp_path))]) == 0
    out = capsys.readouterr().out
    assert out.count(": passed\n") == 8 and "  vae_forward    right (written for you)\n" in out
    assert out.endswith(f"all 8 exercises passed: train the VAE with your own code, `scratchvae workbook "
                        f"train {tmp_path}`\n")


def test_one_exercise_with_a_mistake_gets_its_hint_and_the_fix_passes(tmp_path, capsys):
    """The transcript of docs/workbook.md: a forgotten 1/2, its hint, the fix."""
    workbook_from(SOLUTIONS, tmp_path, *MISTAKES["dlogvar_no_half"])
    assert main(["workbook", "check", str(tmp_path), "ex4_reparameterise.py"]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[:3] == [
        "exercise 4 of 8 (ex4_reparameterise.py): the reparameterisation z = mu + sigma * eps, and its backward (slide 14)",
        "  reparameterise            right",
        "  reparameterise_backward   wrong"]
    assert "      hint: your dlogvar is twice the right one: the encoder outputs log sigma^2, and d sigma" in out
    assert out.endswith("exercise 4: not passed (1 of 2 functions right)\n")
    workbook_from(SOLUTIONS, tmp_path)
    assert main(["workbook", "check", str(tmp_path), "4"]) == 0
    assert capsys.readouterr().out.endswith("exercise 4: passed\n")


def test_a_learners_exception_is_their_line_never_a_traceback(tmp_path, capsys):
    workbook_from(SOLUTIONS, tmp_path, "ex6_adam.py", "v_hat = v / (1 - beta2 ** t)", "v_hat = v / (1 - beta2 ** t) + w.T @ g[:3]")
    assert main(["workbook", "check", str(tmp_path), "6"]) == 1
    captured = capsys.readouterr()
    assert "raises ex6_adam.py, line 9, in adam_step: `v_hat = v / (1 - beta2 ** t) + w.T @ g[:3]`: " \
           "ValueError: matmul" in flat(captured.out)
    assert "its inputs were w (8,), g (8,), m (8,), v (8,), t = 1, lr = 0.001, beta1 = 0.9" in flat(captured.out)
    assert "Traceback" not in captured.out + captured.err and captured.err == ""


@pytest.mark.parametrize("argv, message", [
    (["check", "{missing}"], "{missing} does not exist: start a workbook there with `scratchvae workbook start {missing}`"),
    (["check", "{empty}"], "{empty} holds none of the workbook's files (ex1_layers.py ... ex8_iwae.py)"),
    (["check", "{file}"], "{file} is not a directory"),
    (["check", "{workbook}", "9"], "argument EXERCISE: expected an exercise 1-8 or a file name such as ex3_kl, got '9'"),
    (["start", "{file}"], "{file} exists and is not a directory"),
    (["train", "{missing}"], "{missing} does not exist"),
    (["train", "{workbook}", "--epochs", "0"], "argument --epochs: expected a positive integer, got '0'"),
    (["train", "{workbook}", "--out", "{workbook}/curves.pdf"], "--out must name a .png file"),
    (["train", "{workbook}", "--data-dir", "{empty}", "--no-download"], "mnist"),
    ([], "the following arguments are required: COMMAND"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, capsys):
    names = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "file": tmp_path / "file.txt",
             "workbook": tmp_path / "wb"}
    names["empty"].mkdir()
    names["file"].write_text("x")
    names["workbook"].mkdir()
    workbook_from(EXERCISE_DIR, names["workbook"])
    assert exit_code(["workbook", *[a.format(**names) for a in argv]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("scratchvae workbook"), err
    assert message.format(**names) in err


def exit_code(argv):
    """main's return value, or the code of the SystemExit that argparse's errors raise."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


def tiny_mnist(directory):
    """Train and test splits of 28 x 28 'digits' (bars), as IDX files."""
    import numpy as np
    rng = np.random.default_rng(0)
    for split, n in (("train", 60), ("test", 20)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = np.zeros((n, 28, 28), np.uint8)
        for i, label in enumerate(labels):
            images[i, 4 + 2 * label:6 + 2 * label, 4:24] = 255
        write_idx(directory / f"{FILES[split][0]}.gz", images)
        write_idx(directory / f"{FILES[split][1]}.gz", labels)
    return directory


TINY = ["--train-split", "train", "--test-split", "test", "--hidden", "8", "--latent", "2", "--epochs", "2",
        "--batch-size", "20", "--no-download"]


def test_train_with_a_correct_workbook_matches_scratchvae_and_draws_both(tmp_path, capsys):
    (tmp_path / "wb").mkdir()
    workbook, data = workbook_from(SOLUTIONS, tmp_path / "wb"), tiny_mnist(tmp_path)
    assert main(["workbook", "train", str(workbook), "--data-dir", str(data), *TINY]) == 0
    out = capsys.readouterr().out
    assert out.startswith("training the VAE 784-8-2 for 2 epochs on 60 images of mnist train (test: test), twice")
    assert "  your vae_forward and vae_backward (exercise 5: passes its check)\n" in out
    assert "the same as scratchvae's" in out
    assert (workbook / "train.png").read_bytes()[:4] == b"\x89PNG"


def test_train_with_nothing_written_says_so(tmp_path, capsys):
    main(["workbook", "start", str(tmp_path / "wb")])
    capsys.readouterr()
    assert exit_code(["workbook", "train", str(tmp_path / "wb"), "--data-dir", str(tiny_mnist(tmp_path)), *TINY]) == 2
    assert capsys.readouterr().err.startswith("scratchvae workbook train: error: nothing of yours to train with yet")


def test_train_reports_a_learners_exception_with_its_line_and_exits_1(tmp_path, capsys):
    workbook = tmp_path / "wb"
    workbook.mkdir()
    workbook_from(SOLUTIONS, workbook, "ex5_vae.py", "    D = x.shape[1]\n", "    D = x.shape[1]\n    assert N < 10, 'my check'\n")
    assert main(["workbook", "train", str(workbook), "--data-dir", str(tiny_mnist(tmp_path)), *TINY]) == 1
    out = capsys.readouterr().out
    line = (workbook / "ex5_vae.py").read_text().splitlines().index("    assert N < 10, 'my check'") + 1
    assert (f"your run stopped in epoch 1, step 1: your code raised ex5_vae.py, line {line}, in vae_backward: "
            "`assert N < 10, 'my check'`: AssertionError: my check") in out
    assert (workbook / "train.png").exists()
