#!/usr/bin/env python3
"""Set-up and the two everyday jobs, with nothing but Python 3.11+ on the machine.

    python3 dev.py demo    # set up .venv, then run the main job on the bundled example policy
    python3 dev.py test    # set up .venv, then lint, type-check and run every test
                           # (and the acceptance run when ../shared exists)

Set-up is idempotent: .venv is created once and the pinned, hash-checked dependencies of
requirements.lock are installed when the lock changes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
LOCK = ROOT / "requirements.lock"
STAMP = VENV / ".finops-fabric-lock"
SHARED = ROOT.parent / "shared"


def sh(*cmd: object, env: dict[str, str] | None = None) -> None:
    print("+ " + " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, env=env)


def setup() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may be started by an older python3
        sys.exit(f"FinOps Fabric needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not PY.exists():
        sh(sys.executable, "-m", "venv", VENV)
    want = hashlib.sha256(LOCK.read_bytes() + (ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == want:
        return
    sh(
        PY,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--require-hashes",
        "--no-deps",
        "-r",
        LOCK,
    )
    sh(
        PY,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--no-build-isolation",
        "-e",
        ROOT,
    )
    STAMP.write_text(want + "\n")


def demo() -> None:
    setup()
    mu = BIN / "mu"
    example = ROOT / "src" / "finops_fabric" / "examples" / "acme"
    work = Path(tempfile.mkdtemp(prefix="fabric-demo-"))
    env = {**os.environ, "FABRIC_HOME": str(work / ".fabric")}
    print(f"\n== FinOps Fabric demo in {work}\n", flush=True)
    sh(mu, "init", env=env)
    sh(mu, "validate", f"--ontology={example}", env=env)
    sh(
        mu,
        "generate",
        f"--input={example}",
        f"--output={work / 'A'}",
        f"--receipt={work / 'receipt.json'}",
        env=env,
    )
    sh(mu, "test", f"--enforcer={work / 'A'}", "--golden-suite", env=env)
    sh(
        mu,
        "verify-receipt",
        f"--receipt={work / 'receipt.json'}",
        f"--public-key={work / '.fabric' / 'keys' / 'operator.pub'}",
        env=env,
    )
    for name, tx in (
        (
            "purchase-105k-by-L2",
            '{"id": "tx-1", "type": "purchase", "amount": "105000.00", "actor_level": "L2",'
            ' "approver_id": "u-1", "executor_id": "u-2", "attributes": {}}',
        ),
        (
            "wire-1k-to-KP",
            '{"id": "tx-2", "type": "wire", "amount": "1000", "actor_level": "Board",'
            ' "approver_id": "u-5", "executor_id": "u-6", "attributes": {"country": "KP",'
            ' "vendor_risk": "low"}}',
        ),
        (
            "wire-30k-high-risk-by-CFO",
            '{"id": "tx-3", "type": "wire", "amount": "30000", "actor_level": "CFO",'
            ' "approver_id": "u-5", "executor_id": "u-6", "attributes": {"country":'
            ' "US", "vendor_risk": "high"}}',
        ),
        (  # fail closed: a type the policy does not declare ("PURCHASE" is not "purchase")
            "undeclared-type",
            '{"id": "tx-4", "type": "PURCHASE", "amount": "999999999", "actor_level": "L1",'
            ' "approver_id": "u-1", "executor_id": "u-2", "attributes": {}}',
        ),
    ):
        path = work / f"{name}.json"
        path.write_text(tx)
        sh(mu, "decide", f"--enforcer={work / 'A'}", f"--transaction={path}", env=env)
    print(f"\nThe enforcer is in {work / 'A'}, its signed receipt in {work / 'receipt.json'}.")


def test() -> None:
    setup()
    sh(BIN / "ruff", "check", "src", "tests", "bench", "dev.py")
    sh(BIN / "ruff", "format", "--check", "src", "tests", "bench", "dev.py")
    sh(BIN / "mypy")
    sh(PY, "-m", "pytest", "-p", "no:cacheprovider", "-m", "slow or not slow")
    if SHARED.joinpath("acceptance", "jtbd.py").exists():
        # every acceptance job is required (no --require: all of them count)
        sh(sys.executable, SHARED / "acceptance" / "jtbd.py", env={**os.environ, "MU": str(BIN / "mu")})
    else:
        print("(../shared is absent: the acceptance run is skipped; CI always has it)")


def lock() -> None:
    """Refresh requirements.lock from pyproject.toml (a maintainer's job, needs network)."""
    setup()
    uv = shutil.which("uv") or str(BIN / "uv")
    sh(
        uv,
        "pip",
        "compile",
        "pyproject.toml",
        "requirements-build.in",
        "--extra",
        "dev",
        "--generate-hashes",
        "--python-version",
        "3.11",
        "--no-header",
        "--output-file",
        LOCK,
    )


if __name__ == "__main__":
    jobs = {"setup": setup, "demo": demo, "test": test, "lock": lock}
    if len(sys.argv) != 2 or sys.argv[1] not in jobs:
        sys.exit(f"usage: python3 dev.py {{{'|'.join(jobs)}}}")
    try:
        jobs[sys.argv[1]]()
    except subprocess.CalledProcessError as e:
        sys.exit(e.returncode)
