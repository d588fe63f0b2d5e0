"""The checker's engine (scratchvae/workbook/checker.py): a learner's exception is their file and
line, never a traceback; a file that does not load says where; a wrong piece is blamed where it
is; float64 outputs for float32 inputs are caught; and an unknown slip still names its entries."""
import numpy as np

from scratchvae.workbook.checker import describe_inputs, is_blank, same, wrong_entries
from scratchvae.workbook.checks import EXERCISES
from workbooks import SOLUTIONS, check_directory, workbook_from


def test_a_learners_exception_is_reported_with_their_file_and_line(tmp_path):
    workbook_from(SOLUTIONS, tmp_path, "ex1_layers.py", "dx = dout @ W.T", "dx = dout @ W")
    result = check_directory(tmp_path, EXERCISES[:1])["dense_backward"]
    line = next(n for n, text in enumerate((tmp_path / "ex1_layers.py").read_text().splitlines(), 1)
                if "dx = dout @ W" in text)
    assert result.status == "wrong"
    assert result.lines[0].startswith(f"raises ex1_layers.py, line {line}, in dense_backward: `dx = dout @ W`: "
                                      "ValueError: matmul")
    assert result.lines[1] == "its inputs were x (4, 3), W (3, 5), dout (4, 5)"
    assert not any("Traceback" in text or "File \"" in text for text in result.lines)


def test_an_exception_in_a_piece_names_the_piece_and_a_blank_piece_says_it_is_not_written(tmp_path):
    workbook_from(SOLUTIONS, tmp_path, "ex4_reparameterise.py", "sigma = np.exp(0.5 * logvar)\n    return",
                  "sigma = np.exp(0.5 * logvar)\n    raise KeyError('mu')\n    return")
    result = check_directory(tmp_path, EXERCISES[4:5])["vae_forward"]
    assert result.lines[0].startswith("raises ex4_reparameterise.py, line 7, in reparameterise: "
                                      "`raise KeyError('mu')`: KeyError: 'mu'"), result.lines
    workbook_from(SOLUTIONS, tmp_path, "ex4_reparameterise.py", "sigma = np.exp(0.5 * logvar)\n    return",
                  "raise NotImplementedError('write me')\n    return")
    results = check_directory(tmp_path, EXERCISES[3:5])
    assert results["reparameterise"].status == "not written"      # raised from its own body
    assert results["vae_backward"].lines == ["it calls reparameterise (ex4_reparameterise.py), which is not written yet"]


def test_a_file_that_does_not_load_is_reported_with_its_line(tmp_path):
    from scratchvae.workbook.checker import Checker, learner_modules
    from scratchvae.workbook.cli import MODULES
    workbook_from(SOLUTIONS, tmp_path, "ex3_kl.py", "dmu = mu\n", "dmu = mu +\n")
    with learner_modules(tmp_path, MODULES) as load:
        checker = Checker(tmp_path, EXERCISES, load)
        report, importer = checker.check_exercise(EXERCISES[2]), checker.check_exercise(EXERCISES[4])
    assert report.startswith("ex3_kl.py does not load: ex3_kl.py, line 10: SyntaxError: invalid syntax"), report
    assert importer.startswith("ex5_vae.py does not load: ex3_kl.py, line 10: SyntaxError"), importer


def test_a_wrong_piece_is_blamed_where_it_is(tmp_path):
    """vae_backward is right but calls a relu_backward with a slip: it fails, and says whose fault it is."""
    workbook_from(SOLUTIONS, tmp_path, "ex1_layers.py", "return dout * (y > 0)", "return dout * (y >= 0)")
    results = check_directory(tmp_path, EXERCISES[:1] + EXERCISES[4:5])
    assert results["relu_backward"].hints == ["relu_ge"]
    assert results["vae_backward"].status == "wrong" and results["vae_backward"].hints == []
    assert "note: it calls your relu_backward, which is not right yet (exercise 1: fix that first)" \
        in results["vae_backward"].lines


def test_float64_for_float32_inputs_is_wrong_and_says_why(tmp_path):
    workbook_from(SOLUTIONS, tmp_path, "ex3_kl.py", "dmu = mu\n", "dmu = np.zeros(mu.shape) + mu\n")
    result = check_directory(tmp_path, EXERCISES[2:3])["kl_standard_normal_grads"]
    assert result.status == "wrong" and result.hints == ["float64"]
    assert result.lines[0] == "dmu is float64 for float32 inputs"
    assert result.lines[1].startswith("hint: keep the dtype of the inputs: np.zeros(shape)")


def test_an_unknown_slip_names_the_wrong_entries_but_no_hint(tmp_path):
    workbook_from(SOLUTIONS, tmp_path, "ex1_layers.py", "dW = x.T @ dout", "dW = 1.5 * x.T @ dout")
    result = check_directory(tmp_path, EXERCISES[:1])["dense_backward"]
    assert result.hints == [] and len(result.lines) == 4
    assert result.lines[0] == "dW is wrong in 15 of 15 entries (checked against float64 finite differences):"
    assert all(line.startswith("  dW[") and ": yours " in line and ", right " in line for line in result.lines[1:])


def test_a_missing_return_or_a_wrong_number_of_values_is_said(tmp_path):
    workbook_from(SOLUTIONS, tmp_path, "ex3_kl.py", "    return dmu, dlogvar\n", "    dmu, dlogvar\n")
    assert check_directory(tmp_path, EXERCISES[2:3])["kl_standard_normal_grads"].lines == [
        "returns None: is the `return` statement missing?"]
    workbook_from(SOLUTIONS, tmp_path, "ex3_kl.py", "    return dmu, dlogvar\n", "    return dlogvar\n")
    assert check_directory(tmp_path, EXERCISES[2:3])["kl_standard_normal_grads"].lines == [
        "returns one ndarray, expected 2: (dmu, dlogvar)"]


def test_the_comparisons():
    a = np.array([1.0, 2.0, np.inf, np.nan])
    assert same(a, a.copy()) and not same(a, a[:3]) and not same(a, np.array([1.0, 2.0, np.inf, 3.0]))
    assert same([1.0, 1e-9], [1.0, 0.0]) and not same([1.0, 1e-3], [1.0, 0.0])   # relative to the scale
    assert list(wrong_entries(np.array([1.0, 5.0, np.nan]), np.array([1.0, 4.0, 2.0]), 1e-6)) == [False, True, True]


def test_blank_detection_and_input_shapes():
    def blank(x):
        """doc"""
        raise NotImplementedError("write me")

    def written(x):
        if x:
            raise NotImplementedError("write me")
        return x
    assert is_blank(blank) and not is_blank(written)
    assert describe_inputs(written, (np.zeros((2, 3)), 4, {"a": np.zeros(1)})) == "x (2, 3), argument 2 = 4, argument 3 {'a': (1,), ...}"


def test_an_exception_inside_the_package_is_reported_at_the_learners_call(tmp_path):
    """decoder.backward twice after one forward: layers.py raises, the report is the learner's line."""
    workbook_from(SOLUTIONS, tmp_path, "ex7_inference.py", "    dmu, dlogvar = reparameterise_backward(",
                  "    decoder.backward(bernoulli_log_likelihood_grads(x, logits))\n"
                  "    dmu, dlogvar = reparameterise_backward(")
    result = check_directory(tmp_path, EXERCISES[6:7])["elbo_and_grads"]
    line = (tmp_path / "ex7_inference.py").read_text().splitlines().index(
        "    decoder.backward(bernoulli_log_likelihood_grads(x, logits))") + 1
    assert result.lines[0].startswith(f"raises ex7_inference.py, line {line}, in elbo_and_grads: "
                                      "`decoder.backward(bernoulli_log_likelihood_grads(x, logits))`: RuntimeError: "
                                      "Dense 'logits': backward() called without a matching forward()"), result.lines
