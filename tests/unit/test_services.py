"""The test services themselves: a throwaway PostgreSQL cluster starts, takes durable commits,
restarts, and is gone afterwards; a missing service fails under CI instead of skipping."""

from __future__ import annotations

import pytest
from services import Cluster, missing, postgres_cluster


def test_throwaway_cluster_starts_commits_restarts_and_is_removed() -> None:
    import psycopg

    with postgres_cluster() as cluster:
        url = cluster.create_database("fabric_selftest")
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
            conn.execute("CREATE TABLE t (x int)")
            conn.execute("INSERT INTO t VALUES (1)")
        cluster.restart()
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]
        root = cluster.root
    assert not root.exists()
    assert isinstance(cluster, Cluster)


def test_missing_service_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    import services

    monkeypatch.setattr(services, "UNDER_CI", True)
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        missing("a service", "apt-get install -y it")
    monkeypatch.setattr(services, "UNDER_CI", False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y it"):
        missing("a service", "apt-get install -y it")
