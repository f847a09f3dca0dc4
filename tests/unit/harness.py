"""What the CLI tests share: the bundled example policy and an in-process `mu` runner.

pytest puts this folder on sys.path (tests/ is not a package), so tests import it as
``from harness import ...``; the ``mu`` fixture itself lives in conftest.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from finops_fabric.cli import main

EXAMPLE = Path(__file__).resolve().parents[2] / "src" / "finops_fabric" / "examples" / "acme"
EX = "https://example.com/acme/policy#"


class Run:
    """Calls the CLI in-process; asserts no traceback ever reaches the user."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *args: object) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out, err = self.capsys.readouterr()
        assert "Traceback" not in err
        return code, out, err

    def json(self, *args: object, code: int = 0) -> Any:
        got, out, err = self(*args, "--json")
        assert got == code, (got, out, err)
        return json.loads(out)


def copy_example(tmp_path: Path, name: str = "O") -> Path:
    dest = tmp_path / name
    shutil.copytree(EXAMPLE, dest)
    return dest


def changed_example(tmp_path: Path, name: str = "O2") -> Path:
    """The example with one threshold raised (golden cases still hold)."""
    o = copy_example(tmp_path, name)
    wires = o / "wires.ttl"
    wires.write_text(wires.read_text().replace('"1000000"', '"2000000"'))
    return o


def write_tx(path: Path, **fields: object) -> Path:
    """A $105k purchase by L2 (approver u-1, executor u-2) as JSON at ``path``; ``fields`` override."""
    tx: dict[str, object] = {
        "id": "tx-1",
        "type": "purchase",
        "amount": "105000.00",
        "actor_level": "L2",
        "approver_id": "u-1",
        "executor_id": "u-2",
        "attributes": {"country": "US", "vendor_risk": "low"},
    }
    tx.update(fields)
    path.write_text(json.dumps(tx))
    return path
