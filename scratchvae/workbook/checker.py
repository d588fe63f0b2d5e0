"""The checker: run a learner's function on fixed inputs, say what is wrong, and why.

For each function of an exercise (checks.py describes them), on each of its cases:

    1. a body that is still the blank's (raise NotImplementedError) is "not written yet";
       otherwise call the learner's function: an exception becomes a report of their file
       and line and the shapes of the inputs, never a traceback;
    2. check what came back: how many values, their shapes;
    3. compare every output with the right answer, computed in float64 by finite
       differences of the forward formula (or by the formula itself, for a value), and name
       the entries that differ;
    4. call it again with float32 inputs: the outputs must stay float32;
    5. if it is wrong, try each catalogued mistake of that function on the same inputs: a
       mistake whose outputs are the learner's (on every output the mistake changes) is
       recognised, and its hint is given.

Nothing here knows a formula; checks.py holds the exercises, this file only compares.
"""
import ast
import importlib
import inspect
import sys
import textwrap
import traceback
import types
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

MATCH_TOL = 1e-6                   # a catalogued mistake is recognised within this relative error
SHOWN_ENTRIES = 3                  # wrong entries listed per output


@dataclass
class Case:
    """One set of inputs for a function, and the right answer for them.

    args:   the inputs in the order of the learner's signature (float64 arrays, numbers, ...)
    truth:  output name -> the right value in float64 (finite differences of the forward,
            or the formula itself), and ``source`` says which, in the report
    label:  what the case tries ("moderate", "large"): mistakes can be recognised by which
            labels fail (a formula that is right for moderate logits, wrong for large ones)
    """
    args: tuple
    truth: dict
    label: str = "moderate"
    source: str = "checked against float64 finite differences"


@dataclass
class Mistake:
    """A classic slip and its hint. Recognised either by ``wrong``, the slip written out (the
    learner's signature: its outputs are compared with the learner's), or by ``when``, a test
    of the labels of the cases that pass and fail: when(failed, passed) -> bool."""
    key: str
    hint: str
    wrong: Optional[Callable] = None
    when: Optional[Callable] = None


@dataclass
class Function:
    """A function the learner writes (or, ``given``, one written for them to read).

    outputs:   names of what it returns, in order; ``dict_output``: it returns a dict whose
               keys are those of the truth (the VAE's gradients)
    reference: the package's own, with the learner's signature (train uses it for a blank)
    cases:     () -> list of Case (fixed seeds: the same inputs every time)
    call:      call(functions, *args) -> result, where ``functions`` maps this exercise's
               function names to callables; None: functions[name](*args)
    scalars:   outputs that are a number, not an array (no dtype check)
    """
    name: str
    outputs: tuple
    reference: Callable
    cases: Callable
    mistakes: tuple = ()
    given: bool = False
    call: Optional[Callable] = None
    dict_output: bool = False
    scalars: tuple = ()
    tol: float = 1e-6


@dataclass
class Exercise:
    number: int
    module: str                    # the learner's file, without .py: "ex1_layers"
    title: str                     # "the backward of a dense layer, ReLU and tanh (slides 7-8)"
    functions: tuple
    peek: str                      # where the package's own answer is

    @property
    def file(self):
        return f"{self.module}.py"


# ------------------------------------------------------------------ the learner's files
class LoadError(Exception):
    """A learner's file that does not load; ``report`` says where."""

    def __init__(self, report):
        super().__init__(report)
        self.report = report


@contextmanager
def learner_modules(directory, modules):
    """Import the learner's files from ``directory`` as top-level modules, then forget them.

    Yields load(module_name) -> module (raises LoadError). The files import each other by
    name (``from ex1_layers import dense_backward``), so the directory goes first on
    sys.path for the duration; no bytecode is written into it, and every load reads the
    files as they are now.
    """
    directory = Path(directory).resolve()
    saved_path, saved_flag = list(sys.path), sys.dont_write_bytecode
    saved_modules = {name: sys.modules.pop(name) for name in modules if name in sys.modules}
    sys.path.insert(0, str(directory))
    sys.dont_write_bytecode = True
    importlib.invalidate_caches()

    def load(name):
        try:
            with quiet():
                return importlib.import_module(name)
        except SyntaxError as e:                          # the line of the syntax error itself
            sys.modules.pop(name, None)
            where = f"{Path(e.filename).name}, line {e.lineno}" if e.filename else name
            raise LoadError(f"{name}.py does not load: {where}: SyntaxError: {e.msg}"
                            + (f": `{e.text.strip()}`" if e.text and e.text.strip() else "")) from None
        except Exception as e:                            # noqa: BLE001 (a learner's error, reported)
            sys.modules.pop(name, None)
            raise LoadError(f"{name}.py does not load: {describe_exception(e, directory)}") from None

    try:
        yield load
    finally:
        for name in modules:
            sys.modules.pop(name, None)
        sys.modules.update(saved_modules)
        sys.path[:] = saved_path
        sys.dont_write_bytecode = saved_flag


@contextmanager
def quiet():
    """No NumPy warnings from a learner's code: what they mean is reported as wrong values."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def learner_frame(exc, directory):
    """The innermost traceback frame of ``exc`` in a file of ``directory`` (or None)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if Path(f.filename).resolve().parent == Path(directory).resolve()]
    return frames[-1] if frames else None


def describe_exception(exc, directory):
    """'ex1_layers.py, line 23, in dense_backward: `dW = dout.T @ x`: ValueError: ...' -- no traceback."""
    frame = learner_frame(exc, directory)
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if frame is None:
        return what
    line = f": `{frame.line.strip()}`" if frame.line else ""
    return f"{Path(frame.filename).name}, line {frame.lineno}, in {frame.name}{line}: {what}"


# ------------------------------------------------------------------ comparing numbers
def to_dtype(value, dtype):
    """The inputs of a case in another float dtype: arrays, dicts of arrays, and objects that
    know how (``as_dtype``, the decoder of exercises 7-8); numbers and ints stay as they are."""
    if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating):
        return value.astype(dtype)
    if isinstance(value, dict):
        return {k: to_dtype(v, dtype) for k, v in value.items()}
    if hasattr(value, "as_dtype"):
        return value.as_dtype(dtype)
    return value


def copy_args(args):
    """Fresh copies, so that a function that writes into its inputs cannot spoil the next call."""
    def copy(v):
        if isinstance(v, np.ndarray):
            return v.copy()
        if isinstance(v, dict):
            return {k: copy(a) for k, a in v.items()}
        return v
    return tuple(copy(a) for a in args)


def same(a, b, tol=MATCH_TOL):
    """Equal shapes, the same non-finite entries, finite entries within ``tol`` (relative to the scale)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return False
    finite_a, finite_b = np.isfinite(a), np.isfinite(b)
    if not np.array_equal(finite_a, finite_b) or not np.array_equal(a[~finite_a], b[~finite_b], equal_nan=True):
        return False
    return not wrong_entries(a, b, tol).any()


def wrong_entries(yours, right, tol):
    """Boolean mask of the entries of ``yours`` (same shape) off by more than tol * the scale.

    The scale is max(|yours| + |right|) over the whole array (rel_error's, gradcheck.py), so
    entries near zero are not judged on their own digits. Non-finite entries are wrong
    unless the right value is the same non-finite number.
    """
    yours, right = np.asarray(yours, np.float64), np.asarray(right, np.float64)
    finite = np.isfinite(yours) & np.isfinite(right)
    scale = max(1e-8, float(np.max(np.abs(yours[finite]) + np.abs(right[finite]), initial=0.0)))
    with np.errstate(invalid="ignore"):
        off = ~finite & ~((yours == right) | (np.isnan(yours) & np.isnan(right)))
        off |= finite & (np.abs(np.where(finite, yours - right, 0)) > tol * scale)
    return off


def fmt(value):
    return f"{float(value):.6g}"


# ------------------------------------------------------------------ checking one function
@dataclass
class Outcome:
    """What one call gave: the outputs (as returned, and as float64 arrays), or why there are none."""
    outputs: Optional[dict] = None
    raw: Optional[dict] = None
    problem: Optional[str] = None          # a malformed result: "returns 2 values, expected 3 (...)"
    exception: Optional[BaseException] = None


@dataclass
class Result:
    """The check of one function: its status and the lines that explain it."""
    exercise: Exercise
    name: str
    status: str                            # "right", "wrong", "not written", "given"
    lines: list = field(default_factory=list)
    hints: list = field(default_factory=list)      # keys of the recognised mistakes

    @property
    def right(self):
        return self.status in ("right", "given")


def unpack(function, result):
    """The learner's return value as {output name: value}, or a problem saying what is off."""
    names = function.outputs
    if result is None:
        return None, "returns None: is the `return` statement missing?"
    if function.dict_output:
        if not isinstance(result, dict):
            return None, (f"returns {type(result).__name__}, expected a dict {{name: gradient}} "
                          f"with the keys of params")
        return dict(result), None
    if len(names) == 1:
        return {names[0]: result}, None
    if not isinstance(result, (tuple, list)) or len(result) != len(names):
        got = f"{len(result)} values" if isinstance(result, (tuple, list)) else f"one {type(result).__name__}"
        shown = ", ".join(n for n in names if not n.startswith("_"))
        return None, f"returns {got}, expected {len(names)}: ({shown})"
    return {n: v for n, v in zip(names, result) if not n.startswith("_")}, None


def call(function, functions, args):
    """Run ``function`` from ``functions`` (name -> callable) on copies of ``args``: an Outcome."""
    args = copy_args(args)
    try:
        with quiet():
            result = (function.call(functions, *args) if function.call is not None
                      else functions[function.name](*args))
    except (Exception, SystemExit) as e:                     # noqa: BLE001 (the learner's, reported)
        return Outcome(exception=e)
    raw, problem = unpack(function, result)
    if problem is not None:
        return Outcome(problem=problem)
    outputs = {}
    for name, value in raw.items():
        try:
            outputs[name] = None if value is None else np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            return Outcome(problem=f"returns {name} as {type(value).__name__}, not real numbers")
    return Outcome(outputs=outputs, raw=raw)


def compare(function, outputs, case):
    """(lines, wrong output names) comparing one call's outputs with the case's right values."""
    truth = case.truth
    if function.dict_output:
        missing, extra = [k for k in truth if k not in outputs], [k for k in outputs if k not in truth]
        lines = ([f"returns no gradient for {', '.join(missing)}"] if missing else []) + \
                ([f"returns keys that params does not have: {', '.join(map(str, extra))}"] if extra else [])
        if lines:
            return lines, missing + extra
    lines, wrong = [], []
    for name, right in truth.items():
        yours, right = outputs[name], np.asarray(right, np.float64)
        if yours is None:
            lines.append(f"{name} is None")
        elif name in function.scalars and yours.size == 1 and right.size == 1:
            yours = yours.reshape(right.shape)
        if yours is not None and yours.shape != right.shape:
            lines.append(f"{name} has shape {yours.shape}, expected {right.shape}")
        elif yours is not None:
            off = wrong_entries(yours, right, function.tol)
            if not off.any():
                continue
            lines += describe_entries(name, yours, right, off, case.source)
        wrong.append(name)
    return lines, wrong


def describe_entries(name, yours, right, off, source):
    """['dW is wrong in 6 of 15 entries (checked against ...):', '  dW[0,1]: yours 0.5, right 0.25', ...]"""
    if yours.ndim == 0:
        return [f"{name} is {fmt(yours)}, right {fmt(right)} ({source})"]
    size = np.abs(np.nan_to_num(yours - right, nan=np.inf))
    order = np.argsort(np.where(off, -size, np.inf), axis=None, kind="stable")[:min(SHOWN_ENTRIES, int(off.sum()))]
    return [f"{name} is wrong in {int(off.sum())} of {off.size} entries ({source}):"] + [
        f"  {name}[{','.join(str(int(i)) for i in np.unravel_index(j, off.shape))}]: "
        f"yours {fmt(yours.flat[j])}, right {fmt(right.flat[j])}" for j in order]


def dtype_lines(function, functions, case, directory):
    """What goes wrong with float32 inputs: an exception, or outputs that became float64."""
    outcome = call(function, functions, tuple(to_dtype(a, np.float32) for a in case.args))
    if outcome.exception is not None:
        return [f"with float32 inputs it raises {describe_exception(outcome.exception, directory)}"]
    if outcome.problem:
        return [f"with float32 inputs it {outcome.problem}"]
    lines = [f"{name} is {value.dtype} for float32 inputs" for name, value in outcome.raw.items()
             if name not in function.scalars and isinstance(value, np.ndarray) and value.dtype != np.float32]
    if lines:
        lines.append(f"hint: {FLOAT64_HINT}")
    return lines


FLOAT64_HINT = ("keep the dtype of the inputs: np.zeros(shape) and np.ones(shape) are float64 (use "
                "np.zeros_like(x), or dtype=x.dtype), and so is a NumPy scalar such as np.log(2 * np.pi) "
                "or np.float64(0.5), which turns a float32 array into float64 (use math.log(2 * math.pi), "
                "or a plain Python number)")


def recognise(function, references, cases, outcomes, failed, passed):
    """The catalogued mistakes of ``function`` that explain the learner's outputs.

    A mistake with ``wrong`` is run on every case beside the exercise's ``references``; it
    is recognised when it changes at least one output somewhere and, wherever it does, the
    learner's output is the mistake's.
    """
    found = []
    for mistake in function.mistakes:
        if mistake.when is not None:
            if mistake.when(failed, passed):
                found.append(mistake)
            continue
        changed, explains = False, True
        for case, outcome in zip(cases, outcomes):
            slipped = call(function, {**references, function.name: mistake.wrong}, case.args)
            if slipped.outputs is None:
                raise RuntimeError(f"catalogued mistake {mistake.key} does not run: "
                                   f"{slipped.problem or slipped.exception!r}")
            for name, right in case.truth.items():
                slip = slipped.outputs.get(name)
                if slip is None or same(slip, right) or not np.isfinite(slip).all():
                    continue                                # right here, or overflowing: not what defines it
                changed = True
                yours = outcome.outputs.get(name)
                if name in function.scalars and yours is not None and yours.size == slip.size:
                    yours = yours.reshape(slip.shape)
                explains &= yours is not None and same(yours, slip)
        if changed and explains:
            found.append(mistake)
    return found


def describe_inputs(function, args):
    """'x (4, 3), W (3, 5), dout (4, 5)': the shapes of a call's inputs, by the learner's parameter names."""
    try:
        names = list(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        names = []
    names += [f"argument {i + 1}" for i in range(len(names), len(args))]

    def shape(value):
        if isinstance(value, np.ndarray):
            return f"{value.shape}" if value.ndim else f"= {fmt(value)}"
        if isinstance(value, dict):
            return "{" + ", ".join(f"{k!r}: {shape(v)}" for k, v in list(value.items())[:3]) + ", ...}"
        return f"= {value!r}" if isinstance(value, (int, float)) else f"({type(value).__name__})"
    return ", ".join(f"{name} {shape(value)}" for name, value in zip(names, args))


def is_blank(function):
    """True if the function's body is still the blank's: a docstring, then raise NotImplementedError(...)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError):
        return False
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.FunctionDef) else []
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        body = body[1:]                                    # the docstring
    if len(body) != 1 or not isinstance(body[0], ast.Raise) or body[0].exc is None:
        return False
    raised = body[0].exc.func if isinstance(body[0].exc, ast.Call) else body[0].exc
    return isinstance(raised, ast.Name) and raised.id == "NotImplementedError"


def called_names(function):
    """The global names a function's code uses (nested functions and comprehensions included)."""
    names, codes = set(), [function.__code__]
    while codes:
        code = codes.pop()
        names |= set(code.co_names)
        codes += [c for c in code.co_consts if isinstance(c, types.CodeType)]
    return names


class Checker:
    """Checks the functions of a workbook directory, each once, the pieces they call too.

    ``load`` is learner_modules' loader. A learner's function of another exercise that a
    checked function calls is checked as well (silently), so that a wrong piece is blamed
    where it is, not only where it is used.
    """

    def __init__(self, directory, exercises, load):
        self.directory, self.exercises, self.load = Path(directory), exercises, load
        self.results = {}                                  # (module, function name) -> Result
        self.by_module = {e.module: e for e in exercises}

    def check_exercise(self, exercise):
        """[Result per function], or the report (a str) of a file that does not load."""
        try:
            module = self.load(exercise.module)
        except LoadError as e:
            return e.report
        return [self.check_function(exercise, f, module) for f in exercise.functions]

    def check_function(self, exercise, function, module):
        key = (exercise.module, function.name)
        if key not in self.results:
            self.results[key] = self._check(exercise, function, module)
        return self.results[key]

    def _check(self, exercise, function, module):
        functions = {f.name: getattr(module, f.name) for f in exercise.functions
                     if callable(getattr(module, f.name, None))}
        if function.name not in functions:
            return Result(exercise, function.name, "wrong",
                          [f"{exercise.file} defines no function {function.name} (to get the blank back, "
                           f"rename {exercise.file} and run scratchvae workbook start again)"])
        if is_blank(functions[function.name]):
            return Result(exercise, function.name, "not written")
        cases = function.cases()
        outcomes = [call(function, functions, case.args) for case in cases]
        for case, outcome in zip(cases, outcomes):
            if outcome.exception is not None:
                return self._exception(exercise, function, functions[function.name], case, outcome.exception)
            if outcome.problem is not None:
                return Result(exercise, function.name, "wrong", [outcome.problem])
        lines, failed, passed = [], set(), set()
        for case, outcome in zip(cases, outcomes):
            case_lines, wrong = compare(function, outcome.outputs, case)
            (failed if wrong else passed).add(case.label)
            if wrong and not lines:                         # the first case that shows it
                lines = case_lines
                if case.label != "moderate":
                    lines = [f"{line} (inputs: {case.label})" if not line.startswith("  ") else line
                             for line in lines]
        float32 = dtype_lines(function, functions, cases[0], self.directory)
        if not lines and not float32:
            return Result(exercise, function.name, "given" if function.given else "right")
        result = Result(exercise, function.name, "wrong", lines)
        if lines:
            references = {f.name: f.reference for f in exercise.functions}
            for mistake in recognise(function, references, cases, outcomes, failed, passed):
                result.lines.append(f"hint: {mistake.hint}")
                result.hints.append(mistake.key)
            result.lines += self._blame_pieces(exercise, function, module)
        if float32:
            result.lines += float32
            result.hints.append("float64")
        return result

    def _exception(self, exercise, function, learner, case, exc):
        frame = learner_frame(exc, self.directory)
        if isinstance(exc, NotImplementedError) and frame is not None:
            if Path(frame.filename).stem == exercise.module and frame.name == function.name:
                return Result(exercise, function.name, "not written")
            return Result(exercise, function.name, "wrong",
                          [f"it calls {frame.name} ({Path(frame.filename).name}), which is not written yet"])
        return Result(exercise, function.name, "wrong", [f"raises {describe_exception(exc, self.directory)}",
                                                         f"its inputs were {describe_inputs(learner, case.args)}"])

    def _blame_pieces(self, exercise, function, module):
        """Lines naming the learner's functions this one calls that fail their own checks."""
        lines = []
        for owner, piece in self.pieces(exercise, function, module):
            if not self.check_function(owner, piece, self.load(owner.module)).right:
                where = "" if owner is exercise else f" (exercise {owner.number}: fix that first)"
                lines.append(f"note: it calls your {piece.name}, which is not right yet{where}")
        return lines

    def pieces(self, exercise, function, module):
        """(exercise, Function) of every checked function the learner's ``function`` calls."""
        learner = getattr(module, function.name)
        names = called_names(learner)
        if function.call is not None:                      # e.g. vae_backward is checked on vae_forward's cache
            names |= {f.name for f in exercise.functions}
        found = []
        for name in sorted(names):
            obj = getattr(module, name, None)
            owner = self.by_module.get(getattr(obj, "__module__", None))
            if not isinstance(obj, types.FunctionType) or obj is learner or owner is None:
                continue
            found += [(owner, f) for f in owner.functions if f.name == obj.__name__]
        return found


def wrap(text, indent):
    """A report line wrapped at 100 columns, continuation lines indented a little more."""
    return textwrap.fill(text, width=100, initial_indent=indent, subsequent_indent=indent + "    ",
                         break_long_words=False, break_on_hyphens=False)
