"""Docs that cannot rot: the examples in README.md, docs/*.md and the package's docstrings run,
every `file:function` and test named in docs/code-map.md exists, every "derivations.md,
section N" in a docstring names a section about that code, every NumPy line quoted in
derivations.md is in the source, and every command line in the docs parses."""
import ast
import doctest
import importlib
import inspect
import pkgutil
import re
import shlex
import sys
from pathlib import Path

import pytest

import scratchvae
import scratchvae.machinery.cli

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


MUST_HAVE_EXAMPLES = {"README.md", "elbo.md"}


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: p.name)
def test_examples_in_the_docs_run(path):
    result = doctest.testfile(str(path), module_relative=False, optionflags=FLAGS, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {path.name} failed"
    if path.name in MUST_HAVE_EXAMPLES:                 # a broken fence must not hide them from doctest
        assert result.attempted > 0, f"doctest found no examples in {path.name}"


MODULES = sorted(m.name[len("scratchvae."):] for m in pkgutil.walk_packages(scratchvae.__path__, "scratchvae.")
                 if not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_examples_in_docstrings_run(name):
    module = importlib.import_module(f"scratchvae.{name}")
    result = doctest.testmod(module, optionflags=FLAGS, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring examples in scratchvae.{name} failed"


CODE_REF = re.compile(r"`((?:scratchvae/)?[\w/]+\.py):\s*([\w.]+(?:,\s*[\w.]+)*)`")
TEST_REF = re.compile(r"`(tests/(?:\w+/)?test_\w+\.py)::(\w+)`")


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


def code_map_rows(text=None):
    """(row text, [(file, dotted name)], [(test file, test name)]) for each table row naming both."""
    text = (ROOT / "docs" / "code-map.md").read_text() if text is None else text
    rows = []
    for line in text.splitlines():
        if line.startswith("|"):
            code, tests = references_in(line)
            if code and tests:
                rows.append((line, code, tests))
    return rows


def references_in(text):
    code = [(p, n.strip()) for p, names in CODE_REF.findall(text) for n in names.split(",")]
    return code, TEST_REF.findall(text)


def names_a_test_uses(path, name):
    """Every name and attribute a test function mentions (decorators included), followed into the
    helpers and fixtures its test module defines, so that a call made through a helper counts."""
    tree = ast.parse((ROOT / path).read_text())
    defined = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    assigned = {t.id: n for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
                if isinstance(t, ast.Name)}
    used, todo, seen = set(), [defined[name]], set()
    while todo:
        node = todo.pop()
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name):
                used.add(sub.id)
            elif isinstance(sub, ast.Attribute):
                used.add(sub.attr)
            elif isinstance(sub, ast.arg):
                used.add(sub.arg)                     # a fixture defined in the module
        for helper in (used & (set(defined) | set(assigned))) - seen:
            seen.add(helper)
            todo.append(defined.get(helper) or assigned[helper])
    return used


def check_code_map_row(line, code, tests):
    """Each test of the row must use one of the row's functions, and each function must be used
    by one of the row's tests (a call, or the function passed as a value)."""
    wanted = {dotted.split(".")[-1] for _, dotted in code}
    used = {name: names_a_test_uses(path, name) for path, name in tests}
    for name, names in used.items():
        assert names & wanted, f"code map: {name} exercises none of {sorted(wanted)} ({line[:60]}...)"
    for function in wanted:
        assert any(function in names for names in used.values()), (
            f"code map: no test in the row exercises {function} ({line[:60]}...)")


def test_every_code_map_row_points_to_a_test_that_exercises_its_code():
    rows = code_map_rows()
    assert len(rows) >= 25, "the code map lost its rows"
    for line, code, tests in rows:
        check_code_map_row(line, code, tests)


def test_the_code_map_row_check_fails_on_a_test_of_something_else():
    row = ("| 6 | generate | `scratchvae/vae.py: VAE.sample` | "
           "`tests/chapters/test_posterior.py::test_grid_is_the_midpoint_rule` |")
    (line, code, tests), = code_map_rows(row)
    with pytest.raises(AssertionError, match="exercises none of"):
        check_code_map_row(line, code, tests)
    row = row.replace("VAE.sample", "VAE.sample, square_grid")
    (line, code, tests), = code_map_rows(row)
    with pytest.raises(AssertionError, match="no test in the row exercises sample"):
        check_code_map_row(line, code, tests)
    check_code_map_row(*code_map_rows(row.replace("VAE.sample, ", ""))[0])


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


# ---------------------------------------------------------------- docstrings -> derivations.md

DERIVATIONS = ROOT / "docs" / "derivations.md"
SECTION_HEADING = re.compile(r"^## (\d+)\.\s*(.*)$", re.MULTILINE)
CITATION = re.compile(r"derivations\.md,\s*sections?\s+([^\n]*)")


def derivation_sections(text=None):
    """{N: (heading, body)} for every '## N. heading' of derivations.md."""
    text = DERIVATIONS.read_text() if text is None else text
    heads = list(SECTION_HEADING.finditer(text))
    ends = [h.start() for h in heads[1:]] + [len(text)]
    return {int(h.group(1)): (h.group(2), text[h.end():end]) for h, end in zip(heads, ends)}


def cited_sections(citation):
    """'1-8 and 10 (what is computed), 11 (two rewrites).' -> [1, ..., 8, 10, 11]."""
    numbers = []
    for a, b in re.findall(r"(\d+)(?:\s*[-\u2013]\s*(\d+))?", re.sub(r"\([^)]*\)", "", citation)):
        numbers += range(int(a), int(b or a) + 1)
    return numbers


def documented_objects():
    """(qualified name, docstring) of every class, function, method and property defined in the package."""
    for name in MODULES:
        module = importlib.import_module(f"scratchvae.{name}")
        for obj_name, obj in vars(module).items():
            if getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj):
                yield f"{name}.{obj_name}", obj.__doc__ or ""
            elif inspect.isclass(obj):
                yield f"{name}.{obj_name}", obj.__doc__ or ""
                for member_name, member in vars(obj).items():
                    if inspect.isfunction(member) or isinstance(member, property):
                        yield f"{name}.{obj_name}.{member_name}", member.__doc__ or ""


def check_citations(objects, sections):
    """Assert every 'derivations.md, section(s) ...' in ``objects`` names existing sections, at
    least one of which mentions the object by name (Dense, loss_and_grads) in heading or body."""
    checked = 0
    for qualname, doc in objects:
        for citation in CITATION.findall(doc):
            numbers = cited_sections(citation)
            assert numbers, f"{qualname}: cannot read the section number in {citation!r}"
            missing = [n for n in numbers if n not in sections]
            assert not missing, f"{qualname} cites derivations.md section {missing}, which does not exist"
            name = qualname.split(".")[-1]                   # layers.Dense -> Dense, vae.VAE.loss -> loss
            topic = " ".join(" ".join(sections[n]) for n in numbers)
            assert re.search(rf"\b{re.escape(name)}\b", topic), (
                f"{qualname} cites derivations.md section(s) {numbers}, none of which mentions it")
            checked += 1
    return checked


def test_every_docstring_citation_names_a_section_about_that_code():
    sections = derivation_sections()
    assert sorted(sections)[:12] == list(range(12)), f"derivations.md lost its numbered sections: {sorted(sections)}"
    assert check_citations(documented_objects(), sections) >= 15, "docstrings lost their derivation citations"


def test_the_citation_check_fails_on_a_wrong_section():
    sections = derivation_sections()
    with pytest.raises(AssertionError, match="does not exist"):
        check_citations([("layers.Dense", "Derivation:  docs/derivations.md, section 42")], sections)
    with pytest.raises(AssertionError, match="none of which mentions it"):
        check_citations([("layers.Dense", "Derivation:  docs/derivations.md, section 5")], sections)
    assert check_citations([("fast.FusedStep", "docs/derivations.md, sections 1-8 and 10 (x), 11 (y).")],
                           sections) == 1
    assert cited_sections("1-8 and 10 (what is computed), 11 (two rewrites).") == [*range(1, 9), 10, 11]


# ---------------------------------------------------------------- code quoted in derivations.md

FENCE = re.compile(r"^[ \t]*```.*?^[ \t]*```", re.MULTILINE | re.DOTALL)   # fenced blocks, indented or not
INLINE_CODE = re.compile(r"`([^`]+)`")                  # may wrap onto the next line
SOURCE_FILE = re.compile(r"scratchvae/[\w/]+\.py")


def normalise(text):
    return " ".join(text.split())


def quoted_code(sections):
    """(section, fragment, files) for each inline `...` fragment with np. or self. in it; files
    are the scratchvae/*.py the section names (all of the package's files when it names none)."""
    package = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "scratchvae").rglob("*.py"))
    for number, (heading, body) in sections.items():
        text = heading + "\n" + FENCE.sub("", body)
        files = sorted(set(SOURCE_FILE.findall(heading + body))) or package
        for fragment in INLINE_CODE.findall(text):
            if "np." in fragment or "self." in fragment:
                yield number, fragment, files


def check_quoted_code(quotes):
    checked = 0
    for number, fragment, files in quotes:
        sources = {f: normalise((ROOT / f).read_text()) for f in files}
        assert any(normalise(fragment) in source for source in sources.values()), (
            f"derivations.md section {number} quotes `{fragment}`, which is not in {', '.join(files)}")
        checked += 1
    return checked


def test_every_numpy_line_quoted_in_derivations_is_in_the_source():
    assert check_quoted_code(quoted_code(derivation_sections())) >= 8, "derivations.md quotes less code than it did"


def test_the_quoted_code_check_fails_on_a_changed_line():
    text = "## 1. Dense — `scratchvae/layers.py: Dense`\n\nIn the code: `np.matmul(x.T, dout, out=self.grads[\"b\"])`.\n"
    with pytest.raises(AssertionError, match="not in scratchvae/layers.py"):
        check_quoted_code(quoted_code(derivation_sections(text)))
    text = text.replace('grads[\"b\"]', 'grads[\"W\"]').replace("x.T, dout", "x.T,\n   dout")
    assert check_quoted_code(quoted_code(derivation_sections(text))) == 1     # whitespace does not matter


# ---------------------------------------------------------------- command lines in the docs

def fenced_command_lines(path):
    """Every line of a fenced code block in ``path``, with backslash continuations joined."""
    lines = []
    for block in re.findall(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", path.read_text(), re.MULTILINE | re.DOTALL):
        block = re.sub(r"\\\n\s*", " ", block)
        lines += [line.strip() for line in block.splitlines() if line.strip()]
    return lines


def parser_and_args(command):
    """(parser, argv) when ``command`` runs demo.py or scratchvae, else None."""
    if not re.match(r"(python demo\.py|scratchvae|python -m scratchvae)(\s|$)", command):
        return None                                     # prose in a code block need not be shell
    words = shlex.split(command)
    if words[:2] == ["python", "demo.py"]:
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        return importlib.import_module("demo").build_parser(), words[2:]
    if words[:1] == ["scratchvae"]:
        return scratchvae.machinery.cli.build_parser(), words[1:]
    if words[:3] == ["python", "-m", "scratchvae"]:
        return scratchvae.machinery.cli.build_parser(), words[3:]
    return None


def doc_commands():
    for path in DOC_FILES:
        for line in fenced_command_lines(path):
            for command in line.split("&&"):
                if command.strip():
                    yield path.name, command.strip()


def check_command(command):
    found = parser_and_args(command)
    if found is None:
        return False
    parser, argv = found
    try:
        parser.parse_args(argv)
    except SystemExit as exit:
        raise AssertionError(f"`{command}` does not parse (exit code {exit.code})") from None
    return True


def test_every_command_line_in_the_docs_parses(capsys):
    parsed = [(name, command) for name, command in doc_commands() if check_command(command)]
    names = {name for name, _ in parsed}
    assert len(parsed) >= 8 and {"README.md", "results.md"} <= names, parsed


def test_the_command_check_fails_on_a_wrong_flag(capsys):
    assert check_command("python demo.py --data-dir ../shared/data/mnist --train-split 'test[:9000]'")
    assert not check_command("pip install -e .")
    for wrong in ("python demo.py --data-directory DIR", "scratchvae train --hiden 400",
                  "scratchvae evaluate RUN/checkpoint.npz --is-k many"):
        with pytest.raises(AssertionError, match="does not parse"):
            check_command(wrong)


# ---------------------------------------------------------------- the demo's numbers in README.md

EXPECTED = re.compile(r"^\s*(test negative ELBO|test -log p\(x\))\s+([\d.]+)\s*±\s*([\d.]+)\s*$", re.MULTILINE)
DEMO_LINE = re.compile(r"^(test negative ELBO|test -log p\(x\))\s+([\d.]+) nats", re.MULTILINE)


def readme_expected_numbers(text=None):
    """{'test negative ELBO': (value, tolerance), 'test -log p(x)': (...)} from README.md's block."""
    text = (ROOT / "README.md").read_text() if text is None else text
    return {name: (float(value), float(tolerance)) for name, value, tolerance in EXPECTED.findall(text)}


def check_demo_output(stdout, expected):
    printed = {name: float(value) for name, value in DEMO_LINE.findall(stdout)}
    assert set(printed) == set(expected), f"the demo printed {sorted(printed)}, README expects {sorted(expected)}"
    for name, (value, tolerance) in expected.items():
        assert abs(printed[name] - value) <= tolerance, (
            f"{name}: the demo printed {printed[name]:.2f}, README says {value} ± {tolerance}")


def test_readme_states_the_numbers_a_demo_run_should_print():
    expected = readme_expected_numbers()
    assert set(expected) == {"test negative ELBO", "test -log p(x)"}, expected
    assert all(0 < tolerance < 0.05 * value for value, tolerance in expected.values()), expected
    (elbo, _), (is_bound, _) = expected["test negative ELBO"], expected["test -log p(x)"]
    assert is_bound < elbo                                 # the IS bound is the tighter one


def test_the_demo_number_check_fails_on_a_drift():
    expected = {"test negative ELBO": (111.4, 1.0), "test -log p(x)": (106.7, 1.0)}
    good = "test negative ELBO    111.64 nats per image\ntest -log p(x)        106.93 nats per image\n"
    check_demo_output(good, expected)
    with pytest.raises(AssertionError, match="printed 113.50"):
        check_demo_output(good.replace("111.64", "113.50"), expected)
    with pytest.raises(AssertionError, match="README expects"):
        check_demo_output(good.splitlines()[0], expected)


@pytest.mark.slow
def test_the_readme_demo_prints_the_numbers_the_readme_promises(shared_mnist_dir, tmp_path, capsys):
    """The full offline MNIST demo of README.md (about half a minute on 2 cores)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    demo = importlib.import_module("demo")
    argv = ["--data-dir", str(shared_mnist_dir), "--train-split", "test[:9000]", "--test-split", "test[9000:]",
            "--out", str(tmp_path)]
    assert demo.main(argv) == 0
    check_demo_output(capsys.readouterr().out, readme_expected_numbers())


# ---------------------------------------------------------------- README is a way in; links lead somewhere

def test_readme_is_a_way_in():
    """At most 150 lines; its first 40 hold both set-up commands and the numbers the demo prints."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines"
    first = "\n".join(lines[:40])
    assert "pip install -e . && python demo.py" in first and "pip install -e '.[test]' && python -m pytest" in first
    assert set(readme_expected_numbers(first)) == {"test negative ELBO", "test -log p(x)"}


MD_LINK = re.compile(r"\]\(([^)\s]+)\)")


def heading_anchors(text):
    """GitHub's anchors for the headings of a Markdown text (outside fenced code)."""
    anchors, seen = set(), {}
    for heading in re.findall(r"^#{1,6} +(.+?) *$", FENCE.sub("", text), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def broken_links(path):
    """Relative links of a Markdown file whose file, or heading anchor, does not exist."""
    broken = []
    for target in MD_LINK.findall(FENCE.sub("", path.read_text())):
        if re.match(r"[a-z]+:", target):
            continue                                    # http(s): and mailto: are not checked offline
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked.read_text()):
            broken.append(target)
    return broken


@pytest.mark.parametrize("path", [*DOC_FILES, ROOT / "benchmarks" / "README.md"], ids=lambda p: p.name)
def test_every_relative_link_in_the_docs_leads_somewhere(path):
    assert broken_links(path) == []


def test_the_link_check_fails_on_a_missing_file_or_heading(tmp_path):
    (tmp_path / "b.md").write_text("# The β sweep (slides 12–13)\n")
    page = tmp_path / "a.md"
    page.write_text("[ok](b.md#the-β-sweep-slides-1213) [gone](c.md) [no heading](b.md#nothing) "
                    "[web](https://example.org/x)\n")
    assert broken_links(page) == ["c.md", "b.md#nothing"]
