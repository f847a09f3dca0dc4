"""The daemon is a thin layer beside the CLI, not on top of it: nothing it imports, directly
or through other modules of the product, at module level or inside a function, is
``finops_fabric.cli`` or ``finops_fabric.commands``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import finops_fabric

PACKAGE = Path(finops_fabric.__file__).resolve().parent
FORBIDDEN = ("finops_fabric.cli", "finops_fabric.commands")


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _path_of(module: str) -> Path | None:
    base = PACKAGE.parent.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path) -> set[str]:
    """Every finops_fabric module ``path`` imports anywhere in its code (``from a import b``
    counts as a and, when it is a module, a.b)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{a.name}" for a in node.names if _path_of(f"{module}.{a.name}"))
    return {m for m in found if m == "finops_fabric" or m.startswith("finops_fabric.")}


def _reached_from(start: list[str]) -> dict[str, str]:
    """module -> the module that imports it first, over everything reachable from ``start``."""
    seen: dict[str, str] = {m: "" for m in start}
    todo = list(start)
    while todo:
        module = todo.pop()
        path = _path_of(module)
        if path is None:
            continue
        for imported in sorted(_imports(path)):
            parts = imported.split(".")
            for i in range(2, len(parts) + 1):  # a.b.c imports a.b's __init__ too
                prefix = ".".join(parts[:i])
                if prefix not in seen:
                    seen[prefix] = module
                    todo.append(prefix)
    return seen


def _daemon_modules() -> list[str]:
    return sorted(_module_name(p) for p in (PACKAGE / "daemon").rglob("*.py"))


def test_the_daemon_reaches_no_cli_module() -> None:
    reached = _reached_from(_daemon_modules())
    bad = sorted(m for m in reached if m.startswith(FORBIDDEN))
    chains = []
    for m in bad:
        chain = [m]
        while reached.get(chain[-1]):
            chain.append(reached[chain[-1]])
        chains.append(" <- ".join(chain))
    assert not bad, "the daemon imports the CLI: " + "; ".join(chains)


def test_the_walk_finds_a_cli_import(tmp_path: Path) -> None:
    """The walk itself sees imports inside functions (so the test above can fail)."""
    assert "finops_fabric.cli" in _reached_from(["finops_fabric.commands.daemon"])
    assert "finops_fabric.daemon.environments" in _imports(PACKAGE / "daemon" / "client.py")
    reached = _reached_from(["finops_fabric.daemon.client"])
    assert "finops_fabric.daemon.environments" in reached


def test_importing_every_daemon_module_loads_no_cli_module() -> None:
    modules = _daemon_modules()
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(sorted(m for m in sys.modules if m.startswith({FORBIDDEN!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
