"""CLI commands that live in modules of their own.

Every module of this package defines ``register(cmd)``, where ``cmd(name, handler, help)`` adds
a subcommand (with the common ``--json``, ``--verbose`` and ``--home`` options) and returns its
parser. Handlers take the parsed arguments and return the exit code; they use
``finops_fabric.cli.Out`` for output and raise ``FabricError``s for failures. Modules are found
by listing this package, in name order, so adding a command touches no shared file.
"""

from __future__ import annotations

import pkgutil


def modules() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
