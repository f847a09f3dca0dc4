"""The enforcement daemon: decide over HTTP, deploy atomically, log every decision.

- :mod:`.app`: the Starlette app (endpoints, auth check, metrics, OpenAPI document)
- :mod:`.runtime`: the deployed A, deployment (verify, boot, health-check, atomic switch), epochs
- :mod:`.decision_log`: the append-only SQLite decision log (group commit, extra writers)
- :mod:`.auth`: hashed bearer tokens and roles
- :mod:`.client`: how the CLI finds a daemon through the store and talks to it
- :mod:`.environments`: environment names

The daemon imports nothing from the command line (``finops_fabric.cli``, ``finops_fabric.commands``).

Nothing here is imported by ``finops_fabric`` itself: the daemon's dependencies (Starlette,
uvicorn, prometheus-client, httpx) load only when a daemon command runs.
"""
