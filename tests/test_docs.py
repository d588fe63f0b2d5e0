"""Docs that cannot rot: the examples in README.md, docs/*.md and the package's docstrings run,
and every `file:function` and test named in docs/code-map.md exists."""
import ast
import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import scratchvae

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: p.name)
def test_examples_in_the_docs_run(path):
    result = doctest.testfile(str(path), module_relative=False, optionflags=FLAGS, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {path.name} failed"


MODULES = sorted(m.name for m in pkgutil.iter_modules(scratchvae.__path__) if m.name != "__main__")


@pytest.mark.parametrize("name", MODULES)
def test_examples_in_docstrings_run(name):
    module = importlib.import_module(f"scratchvae.{name}")
    result = doctest.testmod(module, optionflags=FLAGS, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring examples in scratchvae.{name} failed"


CODE_REF = re.compile(r"`((?:scratchvae/)?[\w/]+\.py):\s*([\w.]+(?:,\s*[\w.]+)*)`")
TEST_REF = re.compile(r"`(tests/test_\w+\.py)::(\w+)`")


def resolve_code_ref(path, dotted):
    """Import the module behind ``path`` and follow ``dotted`` (``VAE.loss_and_grads``); raise if absent."""
    if path.startswith("scratchvae/"):
        obj = importlib.import_module(path[:-3].replace("/", "."))
    else:                                       # a top-level script such as demo.py: read its AST
        tree = ast.parse((ROOT / path).read_text())
        names = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        if dotted.split(".")[0] not in names:
            raise AttributeError(f"{path} defines no {dotted}")
        return
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def resolve_test_ref(path, name):
    tree = ast.parse((ROOT / path).read_text())
    if name not in {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}:
        raise AttributeError(f"{path} has no test {name}")


def references(path):
    text = path.read_text()
    code = [(p, n.strip()) for p, names in CODE_REF.findall(text) for n in names.split(",")]
    return code, TEST_REF.findall(text)


def test_every_name_in_the_code_map_exists():
    code, tests = references(ROOT / "docs" / "code-map.md")
    assert len(code) >= 15 and len(tests) >= 10, "the code map lost its table"
    for path, dotted in code:
        resolve_code_ref(path, dotted)
    for path, name in tests:
        resolve_test_ref(path, name)


def test_the_code_map_check_fails_on_a_renamed_function():
    with pytest.raises(AttributeError):
        resolve_code_ref("scratchvae/vae.py", "VAE.loss_and_gradients")
    with pytest.raises(AttributeError):
        resolve_test_ref("tests/test_vae.py", "test_that_does_not_exist")


def test_every_derivation_names_code_that_points_back():
    """Each section of derivations.md names its code; that code's docstring names derivations.md."""
    code, _ = references(ROOT / "docs" / "derivations.md")
    assert len(code) >= 10
    for path, dotted in code:
        obj = resolve_code_ref(path, dotted)
        assert "derivations.md" in (obj.__doc__ or ""), f"{path}:{dotted} does not point back to derivations.md"
