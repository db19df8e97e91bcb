"""Read an answer cell before anything runs it: refuse what an answer may not use.

An answer may use what its exercise lists (`labkit.course.exercises`), Python's harmless builtins,
the modules in ALLOWED_IMPORTS and what it defines itself. Refused, each in one line naming the
line of the cell:

- a name the exercise does not list: labkit's modules and references (`models`, `metrics`,
  `checks`), `get_ipython`, another notebook's objects;
- imports from anywhere else (labkit, os, sys, importlib, pathlib, ...), and `import *`;
- builtins that run text as code or reach outside the answer: `exec`, `eval`, `compile`,
  `__import__`, `open`, `globals`, `locals`, `vars`, `input`, `breakpoint`; `getattr`-like
  builtins except on `self` or with a literal name;
- double-underscore names and attributes (`__class__`, `__globals__`, `__subclasses__`), private
  attributes except on `self`, and the attributes that lead to other modules, files or frames
  (DENIED_ATTRIBUTES);
- assigning to, or deleting, anything the answer did not make itself (`checks.check_unet = ...`,
  `nn.Module.forward = ...`), and rebinding a name the notebook uses (`checks = ...`,
  `global checks`), except for the exercise's own names;
- special methods beyond `__init__`, `__repr__`, `__len__`, `__iter__` and `__getitem__` (a
  `__torch_function__` or `__eq__` could fool a comparison), and metaclasses.

This is the first of three walls; `labkit.course.runner` runs a screened answer with only its
allowed names, and `labkit.course.judge` decides every grade in a process the answer never ran in.
"""

import ast
import builtins
from collections.abc import Iterable
from dataclasses import dataclass

from labkit.course.exercises import ALLOWED_IMPORTS, Exercise

SAFE_BUILTINS = frozenset({
    "abs", "all", "any", "bool", "callable", "dict", "divmod", "enumerate", "filter", "float", "format", "frozenset",
    "hasattr", "hash", "int", "isinstance", "issubclass", "iter", "len", "list", "map", "max", "min", "next",
    "object", "pow", "print", "property", "range", "repr", "reversed", "round", "set", "slice", "sorted",
    "staticmethod", "classmethod", "str", "sum", "super", "tuple", "type", "zip", "bytes", "complex", "dir", "chr",
    "ord", "bin", "hex", "oct", "id", "isinstance", "Ellipsis", "NotImplemented", "getattr", "setattr",
    "ArithmeticError", "AssertionError", "AttributeError", "Exception", "IndexError", "KeyError", "LookupError",
    "NotImplementedError", "OverflowError", "RuntimeError", "StopIteration", "TypeError", "ValueError",
    "ZeroDivisionError", "Warning", "UserWarning",
})
# getattr and setattr are allowed only as `getattr(self, ...)` or with a literal attribute name.
NAMED_ATTRIBUTE_BUILTINS = frozenset({"getattr", "setattr", "hasattr"})
RUNS_CODE = frozenset({"exec", "eval", "compile", "__import__", "open", "globals", "locals", "vars", "input",
                       "breakpoint", "delattr", "exit", "quit", "help", "memoryview", "__build_class__"})
DENIED_ATTRIBUTES = frozenset({
    "sys", "os", "builtins", "importlib", "inspect", "subprocess", "ctypes", "pickle", "marshal", "shutil",
    "pathlib", "io", "gc", "environ", "system", "popen", "load", "loads", "save", "savez", "savez_compressed",
    "savetxt", "loadtxt", "genfromtxt", "fromfile", "tofile", "memmap", "hub", "ops", "library", "utils",
    "cpp_extension", "ctypeslib", "distutils", "f2py", "testing", "lib", "package", "serialization",
    "multiprocessing", "distributed", "get_type_hints", "ForwardRef", "f_globals", "f_locals", "f_back",
    "f_builtins", "f_code", "gi_frame", "gi_code", "cr_frame", "cr_code", "ag_frame", "ag_code", "tb_frame",
    "tb_next", "func_globals", "func_code", "im_func", "im_self", "mro", "checks", "labkit",
})
ALLOWED_SPECIAL_METHODS = frozenset({"__init__", "__repr__", "__len__", "__iter__", "__getitem__"})
# What a notebook's usual module names stand for: an answer may import them again under the same name.
CANONICAL_IMPORTS = {"torch": "torch", "nn": "torch.nn", "F": "torch.nn.functional", "Tensor": "torch.Tensor",
                     "np": "numpy", "numpy": "numpy", "math": "math"}
ALWAYS_RESERVED = frozenset({"checks", "labkit", "get_ipython", "In", "Out", "exit", "quit"})


class AnswerRefused(Exception):
    """An answer that may not be run or graded; the message says why, in one line."""


@dataclass(frozen=True)
class Rules:
    """What one answer may use: the exercise's names and labkit members, and the notebook names
    it may not rebind."""

    allowed: frozenset[str]
    members: dict[str, tuple[str, ...]]
    defines: frozenset[str]
    reserved: frozenset[str]
    subject: str  # the exercise, as messages name it

    @classmethod
    def for_exercise(cls, exercise: Exercise, notebook_names: Iterable[str] = ()) -> "Rules":
        reserved = (frozenset(notebook_names) | ALWAYS_RESERVED) - set(exercise.defines)
        return cls(frozenset(exercise.may_use) | frozenset(exercise.beneath), dict(exercise.members),
                   frozenset(exercise.defines), reserved, " and ".join(exercise.defines))

    def listed(self) -> str:
        names = sorted(self.allowed) + [f"{module}.{member}" for module, members in self.members.items()
                                        for member in members]
        return ", ".join(f"`{name}`" for name in names)


def screen(source: str, rules: Rules) -> None:
    """Refuse `source` if it uses anything `rules` do not allow.

    Raises:
        AnswerRefused: one line naming what was used and where ("line 3 uses `models`, ...").
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        raise AnswerRefused(f"SyntaxError on line {error.lineno} of the answer cell: {error.msg}") from None
    Screen(rules, bound_names(tree), top_level_names(tree)).visit(tree)


def bound_names(tree: ast.AST) -> set[str]:
    """Every name the source binds anywhere (any scope): its own definitions, arguments and locals."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            names.add(node.rest)
    return names


def top_level_names(tree: ast.Module) -> set[str]:
    """The names the source binds in the notebook's own namespace (outside functions and classes)."""
    names: set[str] = set()

    def collect(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            return  # its body binds its own locals
        if isinstance(node, ast.Lambda):
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        if isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[0])
        for child in ast.iter_child_nodes(node):
            collect(child)

    for statement in tree.body:
        collect(statement)
    return names


def root_name(node: ast.AST) -> str | None:
    """`a` for `a.b[c].d`: the name an attribute or subscript chain starts from."""
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def allowed_attribute(name: str, on_self: bool) -> bool:
    if name.startswith("__") and name.endswith("__"):
        return name == "__init__"
    if name.startswith("_"):
        return on_self
    return name not in DENIED_ATTRIBUTES


class Screen(ast.NodeVisitor):
    def __init__(self, rules: Rules, bound: set[str], top_level: set[str]) -> None:
        self.rules, self.bound, self.top_level = rules, bound, top_level
        self.parents: list[ast.AST] = []

    def refuse(self, node: ast.AST, what: str) -> None:
        line = getattr(node, "lineno", None)
        where = f"line {line}" if line else "the answer cell"
        raise AnswerRefused(f"{where} {what}; the {self.rules.subject} exercise may use {self.rules.listed()}, "
                            "the modules torch and numpy, and what the answer defines itself")

    def generic_visit(self, node: ast.AST) -> None:
        self.parents.append(node)
        super().generic_visit(node)
        self.parents.pop()

    # --- names ------------------------------------------------------------------------------------------------

    def visit_Name(self, node: ast.Name) -> None:
        name = node.id
        if isinstance(node.ctx, ast.Load):
            self.check_load(node, name)
        elif name in self.top_level and name in self.rules.reserved:
            self.refuse(node, f"rebinds `{name}`, a name the notebook uses: give your own things names of their own")
        elif name.startswith("__"):
            self.refuse(node, f"binds `{name}`")

    def check_load(self, node: ast.Name, name: str) -> None:
        if name in self.rules.members:
            parent = self.parents[-1] if self.parents else None
            if isinstance(parent, ast.Attribute) and parent.value is node and parent.attr in self.rules.members[name]:
                return
            self.refuse(node, f"uses `{name}` beyond {', '.join(f'`{name}.{m}`' for m in self.rules.members[name])} "
                              f"(`{name}` holds labkit's own answer)")
        if name.startswith("__") or name in RUNS_CODE:
            self.refuse(node, f"uses `{name}`, which runs text as code or reaches outside the answer")
        if name in NAMED_ATTRIBUTE_BUILTINS and name not in self.bound:
            parent = self.parents[-1] if self.parents else None
            if not (isinstance(parent, ast.Call) and parent.func is node):
                self.refuse(node, f"passes `{name}` around instead of calling it")
        if name in self.bound or name in self.rules.allowed or name in SAFE_BUILTINS:
            return
        if name in ("checks", "labkit", "models", "metrics", "losses", "train", "data", "evaluate", "predict"):
            self.refuse(node, f"uses `{name}`, labkit's own code: the answer must be yours")
        if name in ALLOWED_IMPORTS:
            self.refuse(node, f"uses `{name}` without importing it: write `import {name}` in the answer cell")
        self.refuse(node, f"uses `{name}`, which this exercise does not allow")

    def visit_Global(self, node: ast.Global) -> None:
        self.check_declared(node)

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        self.check_declared(node)

    def check_declared(self, node: ast.Global | ast.Nonlocal) -> None:
        for name in node.names:
            if name in self.rules.reserved or name not in self.rules.defines and name not in self.bound:
                self.refuse(node, f"declares `{name}` global: an answer may not rebind the notebook's names")

    # --- attributes -------------------------------------------------------------------------------------------

    def visit_Attribute(self, node: ast.Attribute) -> None:
        on_self = isinstance(node.value, ast.Name) and node.value.id == "self"
        if not allowed_attribute(node.attr, on_self):
            self.refuse(node, f"uses the attribute `{node.attr}`, which leads outside the answer")
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self.check_target(node)
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self.check_target(node)
        self.generic_visit(node)

    def check_target(self, node: ast.AST) -> None:
        root = root_name(node)
        if root is None or root not in self.bound or root in self.rules.reserved and root in self.top_level:
            self.refuse(node, f"changes `{ast.unparse(node)}`, which the answer did not make")

    # --- calls, imports, classes ------------------------------------------------------------------------------

    def visit_Call(self, node: ast.Call) -> None:
        function = node.func
        if isinstance(function, ast.Name) and function.id in NAMED_ATTRIBUTE_BUILTINS and function.id not in self.bound:
            on_self = bool(node.args) and isinstance(node.args[0], ast.Name) and node.args[0].id == "self"
            literal = len(node.args) > 1 and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
            if not on_self and not (literal and allowed_attribute(node.args[1].value, False)):
                self.refuse(node, f"calls `{function.id}` with a computed name on something other than `self`")
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.check_import(node, alias.name, alias.asname or alias.name.split(".")[0],
                              alias.name if alias.asname else alias.name.split(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level:
            self.refuse(node, "imports relative to a package")
        for alias in node.names:
            if alias.name == "*":
                self.refuse(node, f"imports everything from {module} (`import *`)")
            if not allowed_attribute(alias.name, False):
                self.refuse(node, f"imports `{alias.name}` from {module}")
            self.check_import(node, module, alias.asname or alias.name, f"{module}.{alias.name}")

    def check_import(self, node: ast.AST, module: str, bound: str, target: str) -> None:
        if module.split(".")[0] not in ALLOWED_IMPORTS or any(part in DENIED_ATTRIBUTES for part in module.split(".")):
            self.refuse(node, f"imports {module}: answers may import only {', '.join(sorted(ALLOWED_IMPORTS - {'__future__'}))}")
        if bound in self.rules.reserved and CANONICAL_IMPORTS.get(bound) != target:
            self.refuse(node, f"rebinds `{bound}`, a name the notebook uses, to {target}")

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.check_definition(node)
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def check_definition(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        nested = any(isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))
                     for parent in self.parents)
        if not nested and node.name in self.rules.reserved:
            self.refuse(node, f"defines `{node.name}`, a name the notebook already uses")

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.check_definition(node)
        if node.keywords:
            self.refuse(node, f"gives the class {node.name} a metaclass or class keywords")
        for statement in node.body:
            if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = statement.name
                if name.startswith("__") and name.endswith("__") and name not in ALLOWED_SPECIAL_METHODS:
                    self.refuse(statement, f"defines the special method {name} in {node.name}")
        self.generic_visit(node)


def notebook_names(sources: Iterable[str]) -> set[str]:
    """The names a notebook's other cells bind at the top level: an answer must not rebind them."""
    names = set()
    for source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        names |= top_level_names(tree)
        names |= {alias.asname or alias.name.split(".")[0] for node in tree.body
                  if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names}
    return names


def runtime_builtins(allowed_import) -> dict:
    """The builtins an answer runs with in `labkit.course.runner`: SAFE_BUILTINS, a class
    statement's `__build_class__`, and guarded import and attribute access (the same rules as
    the screen, enforced again while the answer runs)."""
    namespace = {name: getattr(builtins, name) for name in SAFE_BUILTINS if hasattr(builtins, name)}

    def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
        if level or name.split(".")[0] not in ALLOWED_IMPORTS or not allowed_import(name):
            raise ImportError(f"an answer may not import {name}")
        return builtins.__import__(name, globals, locals, fromlist, level)

    def checked(name: str, on_self: bool = False) -> str:
        if not isinstance(name, str) or not allowed_attribute(name, on_self):
            raise AttributeError(f"an answer may not use the attribute {name!r}")
        return name

    def guarded_getattr(obj, name, *default):
        return builtins.getattr(obj, checked(name), *default)

    def guarded_setattr(obj, name, value):
        return builtins.setattr(obj, checked(name, on_self=True), value)

    def guarded_hasattr(obj, name):
        return builtins.hasattr(obj, checked(name))

    namespace.update(__build_class__=builtins.__build_class__, __import__=guarded_import, getattr=guarded_getattr,
                     setattr=guarded_setattr, hasattr=guarded_hasattr)
    return namespace
