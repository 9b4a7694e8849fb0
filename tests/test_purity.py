"""The pure core imports no I/O, no clocks and no randomness (DESIGN.md)."""

import ast
import pathlib

import pytest

CORE = [
    "clock",
    "identity",
    "message",
    "chain",
    "membership",
    "log",
    "codec",
    "wire",
    "deflate",
    "channel",
    "address",
    "invites",
    "protocol",
    "node",
    "ratelimit",
    "evidence",
    "restore",
    "commands",
]
FORBIDDEN = {
    "trio",
    "trio_websocket",
    "sqlite3",
    "socket",
    "time",
    "random",
    "os",
    "asyncio",
    "threading",
    "datetime",
    "secrets",
    "select",
    "selectors",
    "subprocess",
}
PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "p2pchat"


def imported_modules(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_no_io(module: str) -> None:
    path = PACKAGE / f"{module}.py"
    if not path.exists():
        pytest.skip(f"{module} not written yet")
    assert imported_modules(path) & FORBIDDEN == set()


def test_core_modules_import_only_core_siblings() -> None:
    for module in CORE:
        path = PACKAGE / f"{module}.py"
        if not path.exists():
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                siblings = [node.module] if node.module else [alias.name for alias in node.names]
                for sibling in siblings:
                    assert sibling in CORE, f"{module} imports non-core sibling {sibling}"
