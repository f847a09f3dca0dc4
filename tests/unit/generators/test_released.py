"""Released generators are locked by the hash of their source: an edit must fail loudly."""

from __future__ import annotations

import pytest

from finops_fabric import generators
from finops_fabric.errors import CheckFailed


@pytest.mark.parametrize("version", generators.versions())
def test_released_generator_source_is_unchanged(version: str) -> None:
    assert generators.source_hash(version) == generators.RELEASED[version], (
        f"generator v{version}'s source changed: released generators are frozen; ship a new version"
    )


def test_every_version_is_locked() -> None:
    assert sorted(generators.RELEASED, key=int) == generators.versions()


def test_a_modified_generator_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(generators.RELEASED, "1", "sha256:" + "0" * 64)
    with pytest.raises(CheckFailed) as err:
        generators.get("1")
    assert err.value.code == "generator.modified"
