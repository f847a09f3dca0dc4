"""Environment names (``test``, ``production``, …): what ``--env`` and ``--target`` accept."""

from __future__ import annotations

import re

from finops_fabric.errors import InputError

__all__ = ["ENV_NAME", "check_env"]

ENV_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def check_env(env: str | None) -> str:
    """``env`` when it is an environment name; :class:`InputError` (``cli.usage``) otherwise."""
    if not env:
        raise InputError("give --env=ENV (for example --env=test)", code="cli.usage")
    if not ENV_NAME.fullmatch(env):
        raise InputError(
            f"--env={env!r} is not an environment name (lowercase letters, digits, - and _)", code="cli.usage"
        )
    return env
