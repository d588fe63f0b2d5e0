"""Mutation testing of the modules that compute what the lecture teaches (docs/mutation.md).

    python tests/mutation/run.py                      # every group, then the hand-made mutants
    python tests/mutation/run.py core chapters        # some groups
    python tests/mutation/run.py --hand               # only the hand-made mutants
    python tests/mutation/run.py --wide               # the survivors again, with plain pytest
    python tests/mutation/run.py --report             # the table again, from the last run
    python tests/mutation/run.py --source DIR --work .mutation-before   # another checkout's tests

A mutant is the code with one small change (a + for a -, 1 for 0, an argument dropped); the
tests kill it if the default test run (``python -m pytest``, without the slow set) goes red.
mutmut 3 (``pip install 'mutmut>=3,<4'``, a developer tool, not a dependency) makes and runs
them. Each group of modules is run in its own copy of the project under ``.mutation/GROUP``
(never in the checkout), with the tests of its folder selected and one worker
(``--max-children 1``: the machine is shared). mutmut changes code inside functions only; the
formulas it cannot reach -- properties, module constants, code outside the lecture's modules
that a figure or a table prints -- are the hand-made mutants of ``hand_mutants.py``: each is
applied to a copy, and the tests it names must fail.

The score of a module is killed / (mutants - equivalent), where the equivalent mutants are
listed in ``equivalent.py``, each with the reason no test can tell it from the original. A
mutant that survives and is not listed there is a missing test. Out of scope (not mutated):
the functions listed in ``GROUPS`` below as command-line plumbing (argument parsing, the
``main`` of a chapter's command), whose numbers are computed by the functions that are.

Writes ``.mutation/report.json`` and ``.mutation/survivors.txt`` (the diff of every
survivor) and prints the table of docs/mutation.md.
"""
import argparse
import ast
import configparser
import difflib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORK = ROOT / ".mutation"                # where the copies go (--work)
SOURCE = ROOT                            # what is copied (--source: another checkout)
# the copies live in .mutation/GROUP: point tests/conftest.py at the checkout's real data
os.environ.setdefault("SCRATCHVAE_SHARED_DATA", str(ROOT.parent / "shared" / "data"))
sys.path.insert(0, str(HERE))

from equivalent import EQUIVALENT                   # noqa: E402  (tests/mutation/equivalent.py)
from hand_mutants import HAND_MUTANTS               # noqa: E402

CORE_TESTS = ["tests/test_layers.py", "tests/test_losses.py", "tests/test_vae.py", "tests/test_optim.py",
              "tests/test_gradcheck.py", "tests/test_train.py", "tests/machinery/test_runner.py"]
# group -> (modules, the tests selected for them, functions left out: command-line plumbing)
GROUPS = {
    "core": (["scratchvae/layers.py", "scratchvae/losses.py", "scratchvae/vae.py", "scratchvae/optim.py",
              "scratchvae/gradcheck.py", "scratchvae/train.py"], CORE_TESTS, {}),
    "chapters": (["scratchvae/chapters/iwae.py", "scratchvae/chapters/cvae.py",
                  "scratchvae/chapters/autoencoder.py", "scratchvae/chapters/posterior.py",
                  "scratchvae/chapters/inference.py", "scratchvae/chapters/estimators.py",
                  "scratchvae/chapters/beta_sweep.py"], ["tests/chapters"],
                 {"scratchvae/chapters/inference.py": {"main", "build_parser", "_gaps_command"},
                  "scratchvae/chapters/beta_sweep.py": {"main", "build_parser", "_beta", "_sweep"}}),
    "machinery": (["scratchvae/machinery/evaluate.py"], ["tests/machinery/test_evaluate.py",
                                                         "tests/machinery/test_runner.py"], {}),
}
# tests left out of the mutmut pass (-k), with the reason. Every survivor then meets them in --wide.
NOT_UNDER_MUTMUT = "not ctrl_c"    # mutmut handles SIGINT itself, so a test's Ctrl-C never reaches the trainer
SLOW_FOR_MUTMUT = {"chapters": "q_star"}   # a VAE trained on real digits: 30 s a mutant, hours for a module
COPIED = ["scratchvae", "tests", "docs", "setup.cfg", "pyproject.toml"]   # docs: a test checks the table results.md shows
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped",  # mutmut's
          36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout",
          -11: "segfault", -9: "segfault", None: "not checked"}


def machine():
    """The CPU and NumPy this ran on (docs/mutation.md quotes it)."""
    import numpy
    info = {}
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    cpu = (f"{info.get('model name', platform.processor())}, family {info.get('cpu family', '?')} "
           f"model {info.get('model', '?')}")
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, NumPy {numpy.__version__}"


def functions(path, left_out):
    """The mutmut name patterns of every function and method in ``path`` not in ``left_out``."""
    module = path[:-3].replace("/", ".")
    tree = ast.parse((SOURCE / path).read_text())
    patterns = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name not in left_out:
            patterns.append(f"{module}.x_{node.name}__mutmut_*")
        elif isinstance(node, ast.ClassDef):
            patterns += [f"{module}.x\u01c1{node.name}\u01c1{item.name}__mutmut_*" for item in node.body
                         if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
                         and f"{node.name}.{item.name}" not in left_out]
    return patterns


def copy_project(work):
    """A fresh copy of the project (its package, tests and settings; from SOURCE) in ``work``."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for name in COPIED:
        source = SOURCE / name
        (shutil.copytree(source, work / name, ignore=shutil.ignore_patterns("__pycache__", ".hypothesis"))
         if source.is_dir() else shutil.copy2(source, work / name))


def prepare(group):
    """A fresh copy of the project for ``group``, its setup.cfg given the group's [mutmut] settings."""
    modules, tests, _ = GROUPS[group]
    work = WORK / group
    copy_project(work)
    cfg = configparser.ConfigParser()
    cfg.read(SOURCE / "setup.cfg")
    if not cfg.has_section("mutmut"):
        cfg.add_section("mutmut")
    cfg["mutmut"]["source_paths"] = "scratchvae"
    cfg["mutmut"]["only_mutate"] = "\n" + "\n".join(modules)
    cfg["mutmut"]["pytest_add_cli_args_test_selection"] = "\n" + "\n".join(tests)
    cfg["mutmut"]["also_copy"] = "\ndocs"                # into mutmut's own copy, mutants/
    deselected = NOT_UNDER_MUTMUT + "".join(f" and not {t}" for t in SLOW_FOR_MUTMUT.get(group, "").split())
    cfg["mutmut"]["pytest_add_cli_args"] = f"\n-k\n{deselected}"
    with open(work / "setup.cfg", "w") as f:
        cfg.write(f)
    return work


def run_group(group, only=None):
    """mutmut on the group's modules (``only``: these of them) in a fresh copy, .mutation/GROUP."""
    modules, _, left_out = GROUPS[group]
    modules = [m for m in modules if not only or m in only]
    work = prepare(group)
    patterns = [p for m in modules for p in functions(m, left_out.get(m, set()))]
    start = time.time()
    with open(work / "mutmut.log", "w") as log:
        code = subprocess.call([sys.executable, "-m", "mutmut", "run", "--max-children", "1", *patterns],
                               cwd=work, stdout=log, stderr=subprocess.STDOUT)
    print(f"{group}: mutmut exit code {code}, {time.time() - start:.0f} s (log: {work / 'mutmut.log'})",
          flush=True)


def real_name(mutant_function):
    """The function or method a mutant copies: "xǁVAEǁloss__mutmut_3" -> "loss", "x_beta_at__mutmut_1" -> "beta_at"."""
    stem = mutant_function.rsplit("__mutmut_", 1)[0]
    return stem.split("\u01c1")[-1] if "\u01c1" in stem else stem[len("x_"):]


def run_wide(group, tests=None, only=None):
    """Run each of the group's survivors once more, outside mutmut: the mutant's function written
    into a copy of the project, and plain pytest on the tests (default: the group's selection).

    mutmut runs a mutant only against the tests it saw reach the mutated function, and a test
    that reads a module-scoped fixture (a model trained once for several tests) is not among
    them: the fixture ran in the first test's setup. Plain pytest has no such blind spot, so a
    mutant it kills is one the default run catches. ``only``: these modules of the group (each
    gets its own copy and results, so several can run at once). A survivor an earlier --wide run
    killed is not run again. Results: .mutation/GROUP-wide[-MODULE].json, read by ``collect``.
    """
    modules, selection, _ = GROUPS[group]
    if only:
        modules = [m for m in modules if m in only]
    tag = "".join(f"-{Path(m).stem}" for m in modules) if only else ""
    done = wide_results(group)
    _, survivors, _ = collect(wide=False)
    names = [line.split(":")[0][2:] for line in survivors if line.startswith("# ")]
    names = [n for n in names if n.split(".x", 1)[0].replace(".", "/") + ".py" in modules
             and done.get(n) != "killed"]
    results_path, work = WORK / f"{group}-wide{tag}.json", WORK / f"{group}-wide{tag}"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    print(f"{group}{tag}: {len(names)} survivors to run with plain pytest on {' '.join(tests or selection)}",
          flush=True)
    for name in names:
        module = name.split(".x", 1)[0].replace(".", "/") + ".py"
        orig, mutant, _ = mutant_sources(group, module)[name]
        function = name.split(".")[-1]
        real = real_name(function)
        rename = lambda lines, old: [lines[0].replace(old, real), *lines[1:]]
        orig_text = "\n".join(rename(orig, function.rsplit("__mutmut_", 1)[0] + "__mutmut_orig"))
        mutant_text = "\n".join(rename(mutant, function))
        copy_project(work)
        target = work / module
        text = target.read_text()
        if text.count(orig_text) != 1:
            results[name] = "not applied"
            continue
        target.write_text(text.replace(orig_text, mutant_text))
        env = {**os.environ, "PYTHONPATH": str(work)}
        proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                               *(tests or selection)], cwd=work, env=env, capture_output=True, text=True)
        results[name] = "killed" if proc.returncode not in (0, 5) else "survived"
        print(f"{name}: {results[name]}", flush=True)
        results_path.write_text(json.dumps(results, indent=1))      # after each: a stopped run keeps its results
    results_path.write_text(json.dumps(results, indent=1))


def wide_results(group):
    """{mutant: "killed" | "survived" | ...} from every --wide run of ``group`` (any one that killed it wins)."""
    merged = {}
    for path in sorted(WORK.glob(f"{group}-wide*.json")):
        for name, status in json.loads(path.read_text()).items():
            if merged.get(name) != "killed":
                merged[name] = status
    return merged


def mutant_sources(group, module):
    """{mutant name: (the original function's lines, the mutant's lines, the original's raise lines)}
    from the file mutmut wrote (``mutants/MODULE``): every mutant is a copy of its function."""
    path = WORK / group / "mutants" / module
    text = path.read_text()
    tree = ast.parse(text)
    prefix = module[:-3].replace("/", ".")
    functions = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and "__mutmut_" in node.name:
            functions[node.name] = node
    sources = {}
    for name, node in functions.items():
        if name.endswith("__mutmut_orig"):
            continue
        orig = functions[name.rsplit("__mutmut_", 1)[0] + "__mutmut_orig"]
        raise_lines = {line - orig.lineno for r in ast.walk(orig) if isinstance(r, ast.Raise)
                       for line in range(r.lineno, r.end_lineno + 1)}
        lines = text.splitlines()
        sources[f"{prefix}.{name}"] = (lines[orig.lineno - 1:orig.end_lineno], lines[node.lineno - 1:node.end_lineno],
                                       raise_lines)
    return sources


def changes(orig, mutant):
    """(the original's changed line numbers, a unified diff) of a mutant against its function."""
    names = [re.search(r"def (\w+)\(", lines[0]).group(1) for lines in (orig, mutant)]
    mutant = [mutant[0].replace(names[1], names[0]), *mutant[1:]]          # the def line, renamed back
    changed = set()
    for tag, i1, i2, _, _ in difflib.SequenceMatcher(None, orig, mutant).get_opcodes():
        if tag != "equal":
            changed.update(range(i1, max(i2, i1 + 1)))
    diff = "\n".join(difflib.unified_diff(orig, mutant, lineterm="", n=2))
    return changed, diff


def changed_lines(diff):
    return [line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]


def collect(wide=True):
    """{module: counts} and the survivors' diffs, from the .meta files of every group's last run.

    A mutant that changes only a ``raise`` statement (the text of an error message, or what is
    raised) is counted apart, as "message": it changes no number, and the score leaves it out.
    With ``wide``, a survivor that the run against every test (``--wide``) killed counts as killed
    (and in the column "elsewhere").
    """
    rows, survivors, stale = {}, [], []
    for group, (modules, _, left_out) in GROUPS.items():
        for module in modules:
            meta = WORK / group / "mutants" / (module + ".meta")
            if not meta.exists():
                continue
            by_pytest = wide_results(group) if wide else {}
            in_scope = [p[:-len("*")] for p in functions(module, left_out.get(module, set()))]
            codes = {k: v for k, v in json.loads(meta.read_text())["exit_code_by_key"].items()
                     if any(k.startswith(p) for p in in_scope)}
            sources = mutant_sources(group, module)
            counts = {"mutants": 0, "message": 0, "killed": 0, "elsewhere": 0, "equivalent": 0, "survived": 0,
                      "not run": 0}
            for name, code in sorted(codes.items()):
                orig, mutant, raise_lines = sources[name]
                changed, diff = changes(orig, mutant)
                if changed and changed <= raise_lines:
                    counts["message"] += 1
                    continue
                counts["mutants"] += 1
                status = STATUS.get(code, "suspicious")
                if status in ("killed", "timeout", "segfault"):    # the tests stopped it, one way or another
                    counts["killed"] += 1
                    if name in EQUIVALENT:
                        stale.append(f"{name} (killed)")
                elif status == "not checked":                    # an interrupted run
                    counts["not run"] += 1
                elif name in EQUIVALENT and EQUIVALENT[name][0] in changed_lines(diff):
                    counts["equivalent"] += 1
                elif by_pytest.get(name) == "killed":           # by plain pytest (run_wide)
                    counts["killed"] += 1
                    counts["elsewhere"] += 1
                else:
                    if name in EQUIVALENT:
                        stale.append(name)
                    counts["survived"] += 1
                    survivors.append(f"# {name}: {status}\n{diff}\n")
            rows[module] = counts
    return rows, survivors, stale


def run_hand(names=None):
    """Apply each hand-made mutant to a copy of the project; its tests must fail. {name: killed?}"""
    work = WORK / "hand"
    results = {}
    for mutant in HAND_MUTANTS:
        if names and mutant["name"] not in names:
            continue
        copy_project(work)
        target = work / mutant["file"]
        text = target.read_text()
        if text.count(mutant["old"]) != 1:
            results[mutant["name"]] = "stale: the original text is not in the file exactly once"
            print(f"hand mutant {mutant['name']}: {results[mutant['name']]}", flush=True)
            continue
        target.write_text(text.replace(mutant["old"], mutant["new"]))
        env = {**os.environ, "PYTHONPATH": str(work)}           # the copy, not the editable install
        start = time.time()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                               *mutant["tests"]], cwd=work, env=env, capture_output=True, text=True)
        imported = subprocess.run([sys.executable, "-c", "import scratchvae; print(scratchvae.__file__)"],
                                  cwd=work, env=env, capture_output=True, text=True).stdout.strip()
        assert imported.startswith(str(work)), f"the copy's tests imported {imported}"
        killed = proc.returncode not in (0, 5)
        results[mutant["name"]] = "killed" if killed else "SURVIVED"
        print(f"hand mutant {mutant['name']}: {results[mutant['name']]} ({time.time() - start:.0f} s)",
              flush=True)
    return results


def report(rows, hand, stale):
    columns = ("mutants", "killed", "elsewhere", "equivalent", "survived", "not run", "message")
    lines = ["| module | " + " | ".join(columns) + " | score |", "|---|" + "---|" * (len(columns) + 1)]
    total = dict.fromkeys(columns, 0)
    for module, c in [*rows.items(), ("all", total)]:
        if module != "all":
            for k in columns:
                total[k] += c[k]
        counted = c["mutants"] - c["equivalent"]
        lines.append(f"| {module} | " + " | ".join(str(c[k]) for k in columns)
                     + f" | {100 * c['killed'] / max(counted, 1):.1f} % |")
    lines.append("\nscore = killed / (mutants - equivalent); 'elsewhere': of the killed, those that survived "
                 "mutmut but fail plain pytest (--wide: a test reading a module-scoped fixture, or of another "
                 "folder); 'message': mutants of a raise statement only (an error's text), left out of the score")
    if hand:
        killed = sum(v == "killed" for v in hand.values())
        lines.append(f"\nhand-made mutants: {killed} of {len(hand)} killed")
        lines += [f"  {name}: {status}" for name, status in hand.items() if status != "killed"]
    if stale:
        lines.append("\nequivalent.py entries to look at again (the change is no longer the mutant's, or a "
                     "test kills it): " + ", ".join(stale))
    return "\n".join(lines)


def equivalents_markdown():
    """The equivalent mutants as docs/mutation.md lists them: one bullet per reason, its mutants below."""
    by_reason = {}
    for name, (line, reason) in EQUIVALENT.items():
        by_reason.setdefault(reason, []).append((name, line))
    lines = []
    for reason, mutants in by_reason.items():
        modules = sorted({n.split(".x", 1)[0].replace(".", "/") + ".py" for n, _ in mutants})
        lines.append(f"- **{len(mutants)} in {', '.join(f'`{m}`' for m in modules)}**: {reason}.")
        lines += [f"  - `{name.split('.')[-1]}`: `{line}`" for name, line in mutants]
    return "\n".join(lines)


def main(argv=None):
    global SOURCE, WORK
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("groups", nargs="*", metavar="GROUP", help=f"groups to run: {', '.join(GROUPS)} (default: all)")
    parser.add_argument("--hand", action="store_true", help="only the hand-made mutants")
    parser.add_argument("--report", action="store_true", help="only the table, from the last run")
    parser.add_argument("--wide", action="store_true",
                        help="run each group's survivors again with plain pytest (no test mapping)")
    parser.add_argument("--wide-tests", nargs="+", default=None, metavar="TEST",
                        help="the tests --wide runs (default: the group's selection; 'tests': the whole default run)")
    parser.add_argument("--module", nargs="+", default=None, metavar="PATH",
                        help="only these modules of the groups (e.g. scratchvae/chapters/inference.py); with --wide, their survivors")
    parser.add_argument("--source", type=Path, default=ROOT, help="the checkout to test (default: this one)")
    parser.add_argument("--work", type=Path, default=WORK, help="where the copies go (default: .mutation)")
    args = parser.parse_args(argv)
    SOURCE, WORK = args.source.resolve(), args.work.resolve()
    unknown = [g for g in args.groups if g not in GROUPS]
    if unknown:
        parser.error(f"unknown group {unknown[0]!r}; choose from {', '.join(GROUPS)}")
    WORK.mkdir(exist_ok=True)
    start = time.time()
    hand_path = WORK / "hand.json"
    if not args.report:
        if args.wide:
            for group in args.groups or GROUPS:
                run_wide(group, args.wide_tests, args.module)
        elif not args.hand:
            for group in args.groups or GROUPS:
                run_group(group, args.module)
        if args.hand or not (args.groups or args.wide):
            hand_path.write_text(json.dumps(run_hand(), indent=1))
    hand = json.loads(hand_path.read_text()) if hand_path.exists() else {}
    rows, survivors, stale = collect()
    (WORK / "survivors.txt").write_text("\n".join(survivors))
    (WORK / "equivalent.md").write_text(equivalents_markdown() + "\n")
    (WORK / "report.json").write_text(json.dumps({"machine": machine(), "rows": rows, "hand": hand}, indent=1))
    print(report(rows, hand, stale))
    print(f"\nmachine: {machine()}; wall time {time.time() - start:.0f} s; survivors' diffs: "
          f"{WORK / 'survivors.txt'}")
    failed = any(c["survived"] + c["not run"] for c in rows.values()) or any(v != "killed" for v in hand.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
