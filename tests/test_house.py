"""How labkit is built: rooms by audience with imports running one way, one command line, short
argument lists, and notebooks that import only what a student reads."""

import ast
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "labkit"
BENCH = "labkit.bench"  # the maintainer's room
COURSE = "labkit.course"  # the lecturer's room: exercise checks, release, grading
FRONT_DOOR = ("labkit.cli", "labkit.__main__")  # above every room
STUDENTS_CHECKS = "labkit.course.checks"  # the one part of the course a notebook imports
MAX_POSITIONAL = 6


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def in_room(module: str, room: str | tuple) -> bool:
    rooms = (room,) if isinstance(room, str) else room
    return any(module == name or module.startswith(name + ".") for name in rooms)


def imported_modules(path: Path) -> set[str]:
    """The labkit modules a file imports, at its top or inside a function, as files (a name imported
    from a package counts as its module when it is one)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name.startswith("labkit"):
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for module, path in MODULES.items():
        # A package's own __init__ and its modules are one room: the package line is not an import.
        graph[module] = {name for name in imported_modules(path) if name != module and not module.startswith(name + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in graph.get(module, ()):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while not group or group[-1] != module:
                group.append(stack.pop())
                on_stack.discard(group[-1])
            if len(group) > 1:
                found.append(sorted(group))

    for module in graph:
        if module not in index:
            visit(module)
    return found


def test_no_module_imports_another_that_imports_it_back():
    assert cycles(import_graph()) == []


def upward(room_test, above: tuple) -> dict[str, list[str]]:
    found = {module: sorted(name for name in names if in_room(name, above))
             for module, names in import_graph().items() if room_test(module)}
    return {module: names for module, names in found.items() if names}


def test_the_students_core_imports_neither_the_course_the_bench_nor_the_command_line():
    assert upward(lambda module: not in_room(module, (COURSE, BENCH, *FRONT_DOOR)), (COURSE, BENCH, *FRONT_DOOR)) == {}


def test_the_course_imports_neither_the_bench_nor_the_command_line():
    assert upward(lambda module: in_room(module, COURSE), (BENCH, *FRONT_DOOR)) == {}


def test_the_bench_imports_neither_the_course_nor_the_command_line():
    assert upward(lambda module: in_room(module, BENCH), (COURSE, *FRONT_DOOR)) == {}


def test_the_tools_only_a_maintainer_runs_live_in_the_bench():
    for name in ("speed", "quality", "gpu_check", "rehearsal", "like_full"):
        assert f"labkit.bench.{name}" in MODULES
    assert not {"labkit.gpu_check", "labkit.rehearsal"} & set(MODULES)


def test_the_command_line_alone_parses_arguments_and_touches_no_argparse_internals():
    parsers = {module for module, path in MODULES.items() if "argparse" in imported_modules_any(path)}
    assert parsers <= {"labkit.cli"}
    source = (PACKAGE / "cli.py").read_text()
    assert "_actions" not in source and "_SubParsersAction" not in source


def imported_modules_any(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_function_takes_more_than_six_positional_arguments():
    """State travels as a dataclass, options as keywords."""
    long = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                positional = [arg.arg for arg in node.args.posonlyargs + node.args.args if arg.arg not in ("self", "cls")]
                if len(positional) > MAX_POSITIONAL:
                    long.append(f"{module}.{node.name} ({len(positional)})")
    assert long == []


def notebook_imports(path: Path) -> set[str]:
    names = set()
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "\n".join(line for line in "".join(cell["source"]).splitlines()
                           if not line.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("labkit"):
                names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names if alias.name.startswith("labkit")}
    return names


def test_notebooks_import_only_the_students_core_and_the_checks():
    reaching = {path.name: sorted(name for name in notebook_imports(path) if in_room(name, (BENCH, *FRONT_DOOR))
                                  or in_room(name, COURSE) and not in_room(name, STUDENTS_CHECKS) and name != COURSE)
                for path in sorted((REPO / "notebooks").glob("*.ipynb"))}
    assert {name: names for name, names in reaching.items() if names} == {}
