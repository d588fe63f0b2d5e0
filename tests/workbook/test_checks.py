"""The exercises and their catalogue (scratchvae/workbook/checks.py): the package's own functions
and an independent learner's solution pass; every blank is "not written yet"; every catalogued
mistake, made as a learner makes it, is recognised with its own hint and no other."""
import ast
import types
from pathlib import Path

import numpy as np
import pytest

from scratchvae.workbook.checker import Checker
from scratchvae.workbook.checks import EXERCISES, ref_iwae_bound, ref_normalised_weights, \
    ref_reparameterise, ref_reparameterise_backward
from scratchvae.workbook.cli import EXERCISE_DIR
from mistakes import MISTAKES
from workbooks import SOLUTIONS, check_directory, workbook_from

PACKAGE = Path(__file__).resolve().parents[2] / "scratchvae"
FUNCTIONS = [(e, f) for e in EXERCISES for f in e.functions]


def test_the_package_s_own_functions_pass():
    """Each exercise's reference (layers.py, losses.py, vae.py, optim.py, chapters/) against the
    finite differences and formulas of the checks: the package is right, and so are the checks."""
    modules = {}
    for exercise in EXERCISES:
        modules[exercise.module] = module = types.ModuleType(exercise.module)
        for function in exercise.functions:
            setattr(module, function.name, function.reference)
    checker = Checker("/nowhere", EXERCISES, modules.__getitem__)
    for exercise in EXERCISES:
        for result in checker.check_exercise(exercise):
            assert result.right, (result.name, result.lines)


def test_a_learners_own_solution_passes_every_exercise():
    results = check_directory(SOLUTIONS)
    assert {name for name, r in results.items()} == {f.name for _, f in FUNCTIONS}
    wrong = {name: r.lines for name, r in results.items() if not r.right}
    assert not wrong, wrong


def test_every_blank_is_not_written_yet(tmp_path):
    results = check_directory(workbook_from(EXERCISE_DIR, tmp_path))
    for exercise, function in FUNCTIONS:
        expected = "wrong" if function.given else "not written"      # vae_forward calls the blank reparameterise
        assert results[function.name].status == expected, (function.name, results[function.name].lines)
    assert "reparameterise" in results["vae_forward"].lines[0] and "not written yet" in results["vae_forward"].lines[0]


def test_the_catalogue_has_a_learners_edit_for_each_mistake_and_they_are_many():
    catalogued = [m.key for _, f in FUNCTIONS for m in f.mistakes]
    assert len(catalogued) == len(set(catalogued)) >= 15
    assert set(catalogued) == set(MISTAKES)
    assert all(sum(len(f.mistakes) for f in e.functions if not f.given) >= 2 for e in EXERCISES)
    hints = [m.hint for _, f in FUNCTIONS for m in f.mistakes]
    assert len(set(hints)) == len(hints), "two mistakes share a hint"


@pytest.mark.parametrize("key", sorted(MISTAKES))
def test_each_mistake_is_recognised_with_its_own_hint(key, tmp_path):
    """The solution with one slip, written as a learner writes it (tests/workbook/mistakes.py):
    the function it is in fails, and the checker gives that mistake's hint and no other's."""
    file, *edits = MISTAKES[key]
    owner_exercise, owner = next((e, f) for e, f in FUNCTIONS for m in f.mistakes if m.key == key)
    assert owner_exercise.file == file
    results = check_directory(workbook_from(SOLUTIONS, tmp_path, file, *edits), [owner_exercise])
    result = results[owner.name]
    assert result.status == "wrong"
    assert result.hints == [key], result.lines
    hint = next(m.hint for m in owner.mistakes if m.key == key)
    assert f"hint: {hint}" in result.lines
    others = [r for name, r in results.items() if name != owner.name and not r.right]
    for other in others:                         # another function of the file may call the slipped one
        assert any(line.startswith("note: it calls your") for line in other.lines), other.lines


def source_lines(path):
    """Every line of the package's file, without its comment, spaces normalised."""
    return {" ".join(line.split("#")[0].split()) for line in (PACKAGE / path).read_text().splitlines()}


@pytest.mark.parametrize("function, path", [(ref_reparameterise, "vae.py"),
                                            (ref_reparameterise_backward, "vae.py"),
                                            (ref_iwae_bound, "chapters/iwae.py"),
                                            (ref_normalised_weights, "chapters/iwae.py")])
def test_the_references_written_out_are_the_packages_own_lines(function, path):
    """Where the package computes a piece inline (z in vae.py, w~ in iwae.py), the reference
    function repeats its lines; they must stay the package's lines."""
    import inspect
    import textwrap
    body = ast.parse(textwrap.dedent(inspect.getsource(function))).body[0].body
    statements = [ast.get_source_segment(textwrap.dedent(inspect.getsource(function)), s) for s in body
                  if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    package = source_lines(path)
    for statement in statements:
        if statement.startswith(("return", "k = ")):
            continue
        assert " ".join(statement.split()) in package, f"{statement!r} is not a line of scratchvae/{path}"


def test_exercise_7s_reference_is_the_inference_chapters_elbo_and_grads():
    """The checker computes exercise 7's answer with VAE.loss_and_grads (the encoder's output fixed at
    lambda: chapters/ may not be imported by the workbook, whose command machinery/cli.py imports);
    the chapter's own function for one datapoint gives the same numbers."""
    from scratchvae.chapters.inference import elbo_and_grads
    from scratchvae.workbook.checks import INFERENCE
    function = INFERENCE.functions[0]
    for case in function.cases():
        decoder, x, mu, logvar, eps = case.args
        chapter = elbo_and_grads(decoder.model, x[None], mu[None], logvar[None], eps[:, None])
        for ours, theirs in zip(function.reference(*case.args), chapter):
            np.testing.assert_allclose(ours, theirs[0], rtol=1e-12, atol=1e-14)


def test_the_guide_names_every_exercise_and_the_packages_answer():
    """docs/workbook.md's table: each exercise's file, and where the package's own answer is."""
    guide = (PACKAGE.parent / "docs" / "workbook.md").read_text()
    for exercise in EXERCISES:
        row = next(line for line in guide.splitlines() if line.startswith(f"| {exercise.number} |"))
        path, names = exercise.peek.split(": ", 1)
        assert exercise.file in row and path in row, row
        for name in names.split(" (")[0].split(", "):
            assert f"`{name}`" in row, (name, row)
        for function in exercise.functions:
            assert function.name in row or function.given, (function.name, row)
