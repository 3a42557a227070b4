"""The house plan holds: every module imports only from floors below its own (docs/design.md draws
them), and there are no import cycles. Imports inside functions count too."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def floors() -> dict[str, int]:
    """docs/design.md's floor table: module (or package) -> floor number, 0 at the bottom."""
    text = (ROOT / "docs" / "design.md").read_text()
    block = text.split("<!-- floors -->")[1].split("<!-- /floors -->")[0]
    table = {}
    for line in block.splitlines():
        match = re.match(r"\|\s*(\d+)\s*\|(.*?)\|", line)
        if match:
            for name in re.findall(r"`([\w.]+)`", match[2]):
                table[name] = int(match[1])
    return table


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / "synthgen").rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def imports(path: Path, known: set[str]) -> set[str]:
    """synthgen modules a file imports, anywhere in it (`from synthgen import x` names module x when
    it is one)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("synthgen"):
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            found |= subs or {node.module}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("synthgen")}
    return found


def floor_of(module: str, table: dict[str, int]) -> tuple[str, int]:
    """The table entry that holds a module: itself or its closest package."""
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        name = ".".join(parts[:i])
        if name in table:
            return name, table[name]
    raise AssertionError(f"{module} is on no floor of docs/design.md")


def test_every_module_imports_only_from_below():
    table, mods = floors(), modules()
    problems = []
    for module, path in mods.items():
        if module == "synthgen":  # the package's front door re-exports the public API from the top
            continue
        entry, floor = floor_of(module, table)
        for dep in imports(path, set(mods)):
            if dep == "synthgen":
                continue  # the package itself: its version and the modules named above
            dep_entry, dep_floor = floor_of(dep, table)
            if dep_floor > floor or (dep_floor == floor and dep_entry != entry):
                problems.append(f"{module} (floor {floor}) imports {dep} (floor {dep_floor})")
    assert not problems, "\n".join(problems)


def test_there_are_no_import_cycles():
    mods = modules()
    graph = {m: imports(p, set(mods)) - {"synthgen"} for m, p in mods.items() if m != "synthgen"}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in graph.get(node, ()):
            if state.get(dep) == 1:
                raise AssertionError(
                    "import cycle: " + " -> ".join(stack[stack.index(dep) :] + [dep])
                )
            if dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])


def test_every_module_is_on_a_floor():
    table = floors()
    for module in modules():
        if module != "synthgen":
            floor_of(module, table)
