"""CLI commands that live in modules of their own.

Each module listed in ``MODULES`` defines ``register(cmd)``, where ``cmd(name, handler, help)``
adds a subcommand (with the common ``--json``, ``--verbose`` and ``--home`` options) and returns
its parser. Handlers take the parsed arguments and return the exit code; they use
``finops_fabric.cli.Out`` for output and raise ``FabricError``s for failures.
"""

from __future__ import annotations

MODULES: tuple[str, ...] = ()
