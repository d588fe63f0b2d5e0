"""The house: the lecture's core at the top of the package, one folder per role, no import circles."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "scratchvae"
CORE = {"__init__.py", "__main__.py", "layers.py", "losses.py", "vae.py", "optim.py", "gradcheck.py", "train.py"}
FOLDERS = {"chapters", "machinery", "pictures", "fast", "workbook"}


def test_the_top_of_the_package_is_the_lecture_and_one_folder_per_role():
    files = {p.name for p in PACKAGE.iterdir() if p.is_file() and p.suffix == ".py"}
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert files == CORE and folders == FOLDERS
    for folder in folders:                          # packages (a wheel holds them), each with its table
        init = PACKAGE / folder / "__init__.py"
        assert init.is_file() and len(ast.get_docstring(ast.parse(init.read_text())) or "") > 100, folder


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path):
    """The scratchvae modules a file imports, at its top or inside functions."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rsplit(".", 1)[0]
            target = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
            if target and target.split(".")[0] == "scratchvae":
                found.add(target)
                found.update(f"{target}.{a.name}" for a in node.names)       # `from . import plots`
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "scratchvae")
    return found


def import_graph():
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {t for t in imports_of(path) if t in modules and t != name} for name, path in modules.items()}


def find_circle(graph):
    """One import circle as a list of modules, or None."""
    state = {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return trail[trail.index(nxt):] + [nxt]
            if nxt not in state:
                circle = visit(nxt, trail + [nxt])
                if circle:
                    return circle
        state[node] = "done"
        return None
    for start in sorted(graph):
        if start not in state:
            circle = visit(start, [start])
            if circle:
                return circle
    return None


def test_no_module_imports_itself_through_others():
    graph = import_graph()
    assert "scratchvae.machinery.runner" in graph["scratchvae.chapters.beta_sweep"]      # the graph is read
    assert find_circle(graph) is None


def test_the_circle_check_finds_one():
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": set()}) is None
