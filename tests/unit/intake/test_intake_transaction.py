"""Transactions: one reader for the daemon and the CLI. The CLI's commands that read a
transaction file (decide, test, diagnose) exit 2 naming the file and line; never 3."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from finops_fabric import cli
from finops_fabric.errors import InputError
from finops_fabric.intake.strict_json import Limits
from finops_fabric.intake.transaction import (
    TransactionRefused,
    body_limit,
    parse_transaction,
    read_transaction,
)
from finops_fabric.pipeline import generate
from finops_fabric.store import Store

ACME = Path(__file__).resolve().parents[3] / "src" / "finops_fabric" / "examples" / "acme"
TX = (
    b'{"id": "t1", "type": "purchase", "amount": "105000", "currency": "USD", "actor_id": "u",'
    b' "actor_level": "L2"}'
)

#: name -> (file bytes, code, HTTP status, line)
HOSTILE: dict[str, tuple[bytes, str, int, int | None]] = {
    "big_int": (b'{"id": "a",\n "amount": 9007199254740993}', "tx.number_out_of_range", 400, 2),
    "big_int_elsewhere": (
        b'{"id": "a", "x": [1, 2, 18446744073709551616]}',
        "tx.number_out_of_range",
        400,
        1,
    ),
    "nan": (b'{"id": "a", "amount": NaN}', "tx.non_finite", 400, 1),
    "infinity": (b'{"id": "a",\n\n "amount": -Infinity}', "tx.non_finite", 400, 3),
    "surrogate": (b'{"id": "\\ud800"}', "tx.lone_surrogate", 400, 1),
    "surrogate_key": (b'{"\\udbff": "x"}', "tx.lone_surrogate", 400, 1),
    "deep": (b'{"x": ' + b"[" * 1000 + b"]" * 1000 + b"}", "tx.too_deep", 400, 1),
    "duplicate": (b'{"id": "a",\n "id": "b"}', "tx.duplicate_key", 400, 2),
    "invalid_utf8": (b'{"id": "a",\n "actor_id": "\xc3\x28"}', "tx.invalid_utf8", 400, 2),
    "not_json": (b'{"id": "a",,}', "tx.invalid_json", 400, 1),
    "array": (b"[1, 2]", "tx.not_object", 400, None),
    "id_int": (b'{"id": 5, "type": "purchase"}', "tx.id_not_string", 422, None),
    "id_null": (b'{"id": null}', "tx.id_not_string", 422, None),
    "id_object": (b'{"id": {"a": 1}}', "tx.id_not_string", 422, None),
    "too_large": (b'{"id": "a", "pad": "' + b"x" * 70_000 + b'"}', "tx.too_large", 413, None),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_parse_refuses_with_code_and_status(name: str) -> None:
    body, code, status, line = HOSTILE[name]
    with pytest.raises(TransactionRefused) as info:
        parse_transaction(body)
    assert (info.value.code, info.value.status, info.value.line) == (code, status, line)
    assert info.value.exit_code == 2


def test_values_are_kept_as_given() -> None:
    tx = parse_transaction(b'{"amount": " 1000 ", "n": 100000.001, "i": 7, "flag": true}')
    assert tx == {"amount": " 1000 ", "n": Decimal("100000.001"), "i": 7, "flag": True}
    assert "id" not in parse_transaction(b"{}")


def test_read_transaction_names_the_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "tx.json"
    p.write_bytes(HOSTILE["duplicate"][0])
    with pytest.raises(InputError) as info:
        read_transaction(p)
    err = info.value
    assert err.code == "tx.duplicate_key" and err.location is not None
    assert (err.location.file, err.location.line) == (str(p), 2)
    assert str(err).startswith(f"{p}:2: ")
    with pytest.raises(InputError) as info:
        read_transaction(tmp_path / "absent.json")
    assert info.value.code == "tx.missing"
    with pytest.raises(InputError) as info:
        read_transaction(tmp_path)
    assert info.value.code == "tx.unreadable"


def test_large_files_are_refused_without_reading_them(tmp_path: Path) -> None:
    p = tmp_path / "tx.json"
    with p.open("wb") as fh:
        fh.truncate(50 * 1024 * 1024)
    with pytest.raises(InputError) as info:
        read_transaction(p)
    assert info.value.code == "tx.too_large" and "52,428,800 bytes" in info.value.message
    assert read_transaction(_write(tmp_path, TX), Limits()) == json.loads(TX)


def _write(tmp_path: Path, data: bytes) -> Path:
    p = tmp_path / "ok.json"
    p.write_bytes(data)
    return p


def test_body_limit_from_config(tmp_path: Path) -> None:
    assert body_limit(None) == 65536
    assert body_limit(tmp_path) == 65536
    (tmp_path / "config.json").write_text('{"smtp": {}}')
    assert body_limit(tmp_path) == 65536
    (tmp_path / "config.json").write_text('{"daemon": {"max_body_bytes": 1000}}')
    assert body_limit(tmp_path) == 1000
    assert body_limit(tmp_path, 2000) == 2000
    for bad in ("0", "-1", "1.5", "true", '"64k"', str(10**9)):
        (tmp_path / "config.json").write_text(f'{{"daemon": {{"max_body_bytes": {bad}}}}}')
        with pytest.raises(InputError) as info:
            body_limit(tmp_path)
        assert info.value.code == "config.max_body_bytes"
    (tmp_path / "config.json").write_text('{"daemon": {"max_body_bytes": 1, "max_body_bytes": 2}}')
    with pytest.raises(InputError) as info:
        body_limit(tmp_path)
    assert info.value.code == "config.unreadable"


@pytest.fixture(scope="module")
def acme_a(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("intake")
    store = Store(root / "store")
    store.init()
    assert generate(ACME, root / "A", store).status == "generated"
    return root / "store", root / "A"


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("verb", ["decide", "test"])
def test_cli_exits_2_with_file_and_line(
    name: str, verb: str, acme_a: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home, a = acme_a
    body, _code, _status, line = HOSTILE[name]
    p = tmp_path / f"{name}.json"
    p.write_bytes(body)
    rc = cli.main([verb, f"--home={home}", f"--enforcer={a}", f"--transaction={p}"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "internal error" not in err
    assert err.startswith(f"mu: error: {p}:{line}: " if line else f"mu: error: {p}: "), err


def test_cli_honours_the_configured_limit(acme_a: tuple[Path, Path], tmp_path: Path) -> None:
    home, a = acme_a
    p = _write(tmp_path, TX)
    assert cli.main(["decide", f"--home={home}", f"--enforcer={a}", f"--transaction={p}"]) == 0
    (home / "config.json").write_text('{"daemon": {"max_body_bytes": 50}}')
    try:
        assert cli.main(["decide", f"--home={home}", f"--enforcer={a}", f"--transaction={p}"]) == 2
    finally:
        (home / "config.json").unlink()
