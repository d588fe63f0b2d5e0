"""What the workbook's tests share: a learner's correct solution, and workbooks made from it.

SOLUTIONS holds one learner's solution of every exercise, written from the exercises' docstrings
in plain NumPy (tests/workbook/mistakes.py edits it to make each catalogued mistake)."""
import shutil
from pathlib import Path

from scratchvae.workbook.checker import Checker, learner_modules
from scratchvae.workbook.checks import EXERCISES
from scratchvae.workbook.cli import MODULES

SOLUTIONS = Path(__file__).parent / "solutions"


def check_directory(directory, exercises=EXERCISES):
    """{function name: Result} of every function of ``exercises`` in ``directory``."""
    with learner_modules(directory, MODULES) as load:
        checker = Checker(directory, EXERCISES, load)
        results = [checker.check_exercise(e) for e in exercises]
    assert not any(isinstance(r, str) for r in results), results
    return {r.name: r for rs in results for r in rs}


def workbook_from(source, tmp_path, file=None, *edits):
    """Copy the files of ``source`` into tmp_path, then in ``file`` replace edits[0] by edits[1], ..."""
    for path in source.glob("*.py"):
        shutil.copy(path, tmp_path)
    if file is not None:
        text = (tmp_path / file).read_text()
        for old, new in zip(edits[::2], edits[1::2]):
            assert text.count(old) == 1, f"the edit's line occurs {text.count(old)} times in {file}"
            text = text.replace(old, new)
        (tmp_path / file).write_text(text)
    return tmp_path
