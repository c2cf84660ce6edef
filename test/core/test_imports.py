"""The package layering, read off the source (AST, no imports): hle_core never imports the ROS side (hle_ros,
rclpy, message packages), not even inside a function, and its modules import each other without cycles
(function-level imports included: a lazy import hides a cycle from the interpreter, not from the design)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Top-level packages hle_core must not import: the ROS adapter, ROS 2 Python and generated message packages.
ROS_PACKAGES = {"hle_ros", "rclpy", "rosidl_runtime_py", "sensor_msgs", "std_msgs", "diagnostic_msgs",
                "lifecycle_msgs", "vision_msgs", "launch", "launch_ros"}


def module_files(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the package (``__init__`` is the package)."""
    out = {}
    for path in sorted(package_dir.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(tree: ast.AST):
    """Every Import / ImportFrom node, at any depth, except under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                yield from _imports(child)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _imports(node)


def imported_names(name: str, path: Path) -> set[str]:
    """Absolute dotted names module ``name`` (file ``path``) imports: ``import a.b`` -> a.b; ``from .x import y``
    -> <package>.x.y (the module, if it is one, else the name is resolved to <package>.x below)."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
            continue
        if node.level:
            base = name.split(".") if is_package else name.split(".")[:-1]
            base = base[:len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        out.update(f"{target}.{a.name}" for a in node.names)
        out.add(target)
    return out


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (a name resolves to the longest module prefix it has)."""
    modules = module_files(package_dir)
    graph = {}
    for name, path in modules.items():
        edges = set()
        for imported in imported_names(name, path):
            parts = imported.split(".")
            while parts and ".".join(parts) not in modules:
                parts.pop()
            target = ".".join(parts)
            if target and target != name and not name.startswith(target + "."):      # not its own parents
                edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_hle_core_never_imports_the_ros_side() -> None:
    offenders = []
    for name, path in module_files(ROOT / "hle_core").items():
        for imported in imported_names(name, path):
            if imported.split(".")[0] in ROS_PACKAGES:
                offenders.append(f"{path.relative_to(ROOT)}: {imported}")
    assert not offenders, "hle_core imports the ROS side:\n" + "\n".join(sorted(set(offenders)))


def test_hle_core_has_no_import_cycles() -> None:
    found = cycles(import_graph(ROOT / "hle_core"))
    assert not found, "import cycles among hle_core modules (function-level imports included):\n" + \
        "\n".join(" <-> ".join(c) for c in found)


def test_hle_core_does_not_name_the_node() -> None:
    """The node's name and topics belong to hle_ros; the library takes topics as arguments. (Command-line
    defaults of hle_core/commands may name where the node publishes, e.g. ``hle bag-eval --pred-topic``.)"""
    offenders = []
    for path in module_files(ROOT / "hle_core").values():
        if "commands" in path.relative_to(ROOT / "hle_core").parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                      and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings \
                    and ("panoptic_node" in node.value or "/hle_panoptic" in node.value):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not offenders, "hle_core names the node or its topics:\n" + "\n".join(offenders)


# --- the checks themselves can fail -----------------------------------------------------------------------------
@pytest.fixture
def fake_package(tmp_path: Path):
    def make(files: dict[str, str]) -> Path:
        pkg = tmp_path / "pkg"
        for rel, text in {"__init__.py": "", **files}.items():
            (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
            (pkg / rel).write_text(text)
        return pkg
    return make


def test_a_lazy_import_cycle_is_found(fake_package) -> None:
    pkg = fake_package({"a.py": "from .b import g\n", "b.py": "def g():\n    from . import a\n",
                        "sub/__init__.py": "", "sub/c.py": "from ..a import g\nfrom pkg.sub import d\n",
                        "sub/d.py": "import pkg.sub.c\n",
                        "e.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import f\n",
                        "f.py": "from .e import TYPE_CHECKING\n"})
    graph = import_graph(pkg)
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.a"}
    assert graph["pkg.sub.c"] == {"pkg.a", "pkg.sub.d"} and graph["pkg.e"] == set()   # TYPE_CHECKING skipped
    assert cycles(graph) == [["pkg.a", "pkg.b"], ["pkg.sub.c", "pkg.sub.d"]]


def test_an_upward_import_inside_a_function_is_found(fake_package) -> None:
    pkg = fake_package({"m.py": "def run():\n    import hle_ros.bag_play\n"})
    assert "hle_ros.bag_play" in imported_names("pkg.m", pkg / "m.py")
