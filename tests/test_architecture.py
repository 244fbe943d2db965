"""The layout's rules, read from the source: no import cycle (type-only and function-level imports included), lower
layers never import higher ones, the orchestrator is imported only by what runs distillations, and no function in
the package is longer than 60 lines; CONTRIBUTING.md's layout table names every module there is."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"xkd": "xkd", "students": "xkd.students", "teachers": "xkd.teachers", "cli": "xkd.cli"}
MAX_FUNCTION_LINES = 60
SUBPACKAGES = sorted(p.parent.name for p in (ROOT / "xkd").glob("*/__init__.py"))

# module prefix -> prefixes its modules must never import directly
FORBIDDEN = {
    "xkd.config": ("xkd.",),  # the one source of defaults rests on nothing but errors and limits
    "xkd.limits": ("xkd.config", "xkd.teachers", "xkd.students", "xkd.training", "xkd.methods"),
    "xkd.tasks": ("xkd.data", "xkd.methods", "xkd.training", "xkd.teachers", "xkd.students"),
    "xkd.methods": ("xkd.training", "xkd.teachers", "xkd.students", "xkd.transfer", "xkd.studies"),
    "xkd.training": ("xkd.teachers", "xkd.students", "xkd.transfer", "xkd.studies", "xkd.distillation"),
    "xkd.teacher_cache": ("xkd.training", "xkd.teachers", "xkd.students", "xkd.distillation"),
    "xkd.students": ("xkd.distillation", "xkd.studies", "xkd.teacher_outputs", "xkd.run_report", "xkd.api"),
    "xkd.teachers": ("xkd.distillation", "xkd.studies", "xkd.teacher_outputs", "xkd.run_report", "xkd.api"),
    # (the augmenter reads GloVe through `xkd.students.word_vectors`, a plain file reader)
    "xkd.transfer": (
        "xkd.teachers",
        "xkd.students.registry",
        "xkd.students.configured",
        "xkd.training",
        "xkd.distillation",
    ),
}
ALLOWED_ABOVE = {"xkd.config": ("xkd.errors", "xkd.limits")}
ORCHESTRATOR_USERS = ("xkd.api", "xkd.studies.", "xkd.cli.")  # what runs distillations; nothing else imports it


def module_files() -> dict[str, Path]:
    """Every module of the installed package, by its import name, as `pyproject.toml`'s package-dir maps it."""
    modules = {}
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = [p for p in path.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"]
            modules[".".join([package, *parts])] = path
    return modules


MODULES = module_files()


def owner(name: str) -> str | None:
    """The xkd module an imported name lives in (`xkd.methods.Method` -> `xkd.methods`)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> set[str]:
    """The xkd modules `module` imports anywhere in its source: top level, inside functions, under TYPE_CHECKING."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        found |= {m for m in map(owner, (n for n in names if n.startswith("xkd"))) if m and m != module}
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
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
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_every_kind_of_import():
    assert {"xkd.errors", "xkd.limits"} <= GRAPH["xkd.config"]
    assert "xkd.distillation" in GRAPH["xkd.cli.main"]  # imported inside the command's function
    assert "xkd.config" in GRAPH["xkd.tasks"]  # a TYPE_CHECKING import counts
    assert "xkd.teachers.finetune" in GRAPH["xkd.teachers.resolve"]


def test_no_import_cycle():
    assert cycles(GRAPH) == []


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_lower_layers_never_import_higher_ones(layer):
    allowed = ALLOWED_ABOVE.get(layer, ())
    wrong = [
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if module == layer or module.startswith(layer + ".")
        for target in targets
        if any(target == f or target.startswith(f) for f in FORBIDDEN[layer]) and target not in allowed
    ]
    assert wrong == []


def test_only_what_runs_distillations_imports_the_orchestrator():
    users = sorted(m for m, targets in GRAPH.items() if "xkd.distillation" in targets)
    assert users and all(m == "xkd.api" or m.startswith(ORCHESTRATOR_USERS) for m in users), users


def test_no_function_is_longer_than_sixty_lines():
    long = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{module}.{node.name}: {lines} lines")
    assert long == []


def test_a_student_built_on_teacher_layers_does_not_load_the_training_loop():
    code = "import sys, xkd.students.bert_k; print('xkd.training.loop' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def layout_rows() -> dict[str, set[str]]:
    """CONTRIBUTING.md's layout table: folder -> the module files its row names."""
    rows = {}
    for line in (ROOT / "CONTRIBUTING.md").read_text().splitlines():
        cells = line.split("|")
        if len(cells) > 3 and re.fullmatch(r" `[a-z_/]+/` ", cells[1]):
            rows[cells[1].strip(" `/")] = set(re.findall(r"`([a-z_0-9]+\.py)`", "|".join(cells[3:])))
    return rows


@pytest.mark.parametrize("folder", ["xkd", *(f"xkd/{d}" for d in SUBPACKAGES), "teachers", "students", "cli"])
def test_the_layout_table_names_every_module_and_no_other(folder):
    named = layout_rows()[folder]
    present = {p.name for p in (ROOT / folder).glob("*.py") if p.name != "__init__.py"}
    assert sorted(present - named) == [] and sorted(named - present - {"__init__.py"}) == []
