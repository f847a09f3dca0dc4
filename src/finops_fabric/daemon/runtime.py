"""What the daemon runs: the deployed A, and deploying a new one.

A deployment verifies A against its generation receipt (in production also that its O was
approved by a member of the compliance roster, see :mod:`finops_fabric.approvals`), boots it
(``load_enforcer``: every artifact hash checked before any code runs), health-checks it (every
golden case of A must pass), and switches: ONE reference assignment under a lock. A request reads
``runtime.active`` once and decides with that object to the end, so in-flight requests
finish on the old A. If any step fails, the old A keeps serving and the deployment receipt
says FAIL and why. Only rules whose artifact hash changed count as restarted.

Production deploys only in an epoch window: a cron-like schedule per environment in
``<store>/config.json`` (``{"epochs": {"production": "*/5 * * * *"}}``), see :func:`cron_matches`.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finops_fabric.canonical import sha256_hex
from finops_fabric.enforcer import (
    Enforcer,
    check_files,
    enforcer_hash_of_manifest,
    load_enforcer,
    parse_manifest,
)
from finops_fabric.errors import CheckFailed, FabricError, InputError
from finops_fabric.golden import run_case
from finops_fabric.store import Store

__all__ = [
    "Active",
    "DeployResult",
    "Runtime",
    "cron_matches",
    "epoch_schedule",
    "generation_receipt_for",
    "next_epoch",
    "now_utc",
    "successful_deployments",
]

DEFAULT_EPOCHS = {"production": "*/5 * * * *"}


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _stamp(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the epoch schedule -------------------------------------------------------------------------

_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)


def _parse_field(text: str, name: str, lo: int, hi: int) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        step = 1
        base = part
        if "/" in part:
            base, _, step_text = part.partition("/")
            if not step_text.isdigit() or int(step_text) == 0:
                raise InputError(f"bad step in cron {name} field {text!r}", code="config.epoch")
            step = int(step_text)
        if base == "*":
            start, end = lo, hi
        elif "-" in base:
            a, _, b = base.partition("-")
            if not (a.isdigit() and b.isdigit()):
                raise InputError(f"bad range in cron {name} field {text!r}", code="config.epoch")
            start, end = int(a), int(b)
        elif base.isdigit():
            start = int(base)
            end = hi if "/" in part else start
        else:
            raise InputError(f"bad cron {name} field {text!r}", code="config.epoch")
        if not (lo <= start <= hi and lo <= end <= hi and start <= end):
            raise InputError(f"cron {name} field {text!r} is outside {lo}-{hi}", code="config.epoch")
        values.update(range(start, end + 1, step))
    return values


def parse_cron(expr: str) -> list[set[int]]:
    """Five fields (minute hour day-of-month month day-of-week) of ``*``, ``*/n``, ``a-b``,
    ``a-b/n``, numbers and comma lists. Day of week: 0 or 7 is Sunday."""
    parts = expr.split()
    if len(parts) != 5:
        raise InputError(
            f"cron schedule {expr!r} needs 5 fields (minute hour day month weekday)", code="config.epoch"
        )
    fields = [_parse_field(p, name, lo, hi) for p, (name, lo, hi) in zip(parts, _FIELDS, strict=True)]
    if 7 in fields[4]:
        fields[4].add(0)
    return fields


def cron_matches(expr: str, t: dt.datetime) -> bool:
    """Does minute ``t`` fall in the schedule? Day-of-month and day-of-week follow cron: when
    both are restricted, either may match."""
    minute, hour, dom, month, dow = parse_cron(expr)
    dom_star, dow_star = expr.split()[2] == "*", expr.split()[4] == "*"
    weekday = (t.weekday() + 1) % 7  # cron: Sunday = 0
    if t.minute not in minute or t.hour not in hour or t.month not in month:
        return False
    if dom_star or dow_star:
        return t.day in dom and weekday in dow
    return t.day in dom or weekday in dow


def next_epoch(expr: str, after: dt.datetime, *, horizon_days: int = 366) -> dt.datetime:
    """The first minute at or after ``after`` (rounded up to a whole minute) in the schedule."""
    parse_cron(expr)
    t = after.replace(second=0, microsecond=0)
    if t < after:
        t += dt.timedelta(minutes=1)
    end = t + dt.timedelta(days=horizon_days)
    while t < end:
        if cron_matches(expr, t):
            return t
        t += dt.timedelta(minutes=1)
    raise InputError(f"cron schedule {expr!r} never matches", code="config.epoch")


def epoch_schedule(store: Store, env: str) -> str | None:
    """The epoch schedule of ``env`` from ``<store>/config.json`` (production defaults to every
    5 minutes; other environments deploy at once unless configured)."""
    path = store.home / "config.json"
    epochs: Mapping[str, Any] = DEFAULT_EPOCHS
    if path.is_file():
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read {path}: {exc}", code="config.unreadable") from exc
        if isinstance(doc, dict) and isinstance(doc.get("epochs"), dict):
            epochs = {**DEFAULT_EPOCHS, **doc["epochs"]}
    value = epochs.get(env)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"{path}: epochs.{env} must be a cron string", code="config.epoch")
    parse_cron(value)
    return value


# --- the generation receipt of an A ---------------------------------------------------------------


def successful_deployments(store: Store, env: str) -> Iterator[dict[str, Any]]:
    """The receipts of ``env``'s successful deployments and rollbacks (the ones that switched
    what runs), newest first in ledger order."""
    for r in reversed(store.receipts()):
        if r.get("kind") not in ("deployment", "rollback") or r.get("env") != env:
            continue
        if r.get("event", "deploy") != "deploy":
            continue
        if ((r.get("gates") or {}).get("operational") or {}).get("status") != "PASS":
            continue
        yield r


def generation_receipt_for(store: Store, enforcer_hash: str) -> dict[str, Any] | None:
    """The newest generation receipt in the ledger whose ``outputs.enforcer_hash`` is this hash."""
    found = None
    for r in store.receipts("generation"):
        outputs = r.get("outputs")
        if isinstance(outputs, dict) and outputs.get("enforcer_hash") == enforcer_hash:
            found = r
    return found


# --- deployments ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Active:
    """One deployed A: what every request of its generation decides with."""

    enforcer: Enforcer
    env: str
    generation_receipt_hash: str
    deployed_at: str
    deployment_receipt_hash: str | None
    rules: dict[str, str]  # rule IRI → artifact sha256

    @property
    def hash(self) -> str:
        return self.enforcer.hash

    def describe(self) -> dict[str, Any]:
        paths = self.enforcer.rule_artifacts()
        return {
            "env": self.env,
            "enforcer_hash": self.enforcer.hash,
            "generation_receipt_hash": self.generation_receipt_hash,
            "deployment_receipt_hash": self.deployment_receipt_hash,
            "deployed_at": self.deployed_at,
            "ontology_hash": self.enforcer.ontology_hash,
            "rules": {
                iri: {"artifact": paths.get(iri), "sha256": digest}
                for iri, digest in sorted(self.rules.items())
            },
        }


def rule_hashes(enforcer: Enforcer) -> dict[str, str]:
    return {a["rule"]: a["sha256"] for a in enforcer.manifest["artifacts"] if "rule" in a}


@dataclass
class DeployResult:
    ok: bool
    receipt: dict[str, Any]
    restarted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": "deployed" if self.ok else "failed",
            "enforcer_hash": self.receipt.get("outputs", {}).get("enforcer_hash"),
            "receipt_hash": self.receipt["receipt_hash"],
            "restarted": self.restarted,
            "kept": self.kept,
            "removed": self.removed,
            "reason": self.reason,
            "receipt": self.receipt,
        }


BootHook = Callable[[Enforcer], None]


class Runtime:
    """The deployment state of one daemon. ``active`` is swapped whole, never mutated."""

    def __init__(self, store: Store, env: str) -> None:
        self.store = store
        self.env = env
        self.active: Active | None = None
        self._deploy_lock = threading.Lock()
        #: Test hook: called with the booted A before its health check; raising fails the boot.
        self.boot_hook: BootHook | None = None
        self.last_health: dict[str, Any] = {"status": "degraded", "detail": "nothing deployed yet"}
        self.on_deployed: list[Callable[[DeployResult], None]] = []

    # -- restoring what ran before a restart --------------------------------------------------

    def restore(self) -> str | None:
        """Boot the A of the newest successful deployment (or rollback) of this env in the ledger,
        from the store's verified snapshot. Returns its hash, or None when there is none."""
        for r in successful_deployments(self.store, self.env):
            gen = self.store.find(str((r.get("inputs") or {}).get("generation_receipt_hash")))
            if gen is None:
                return None
            listing = (gen.get("outputs") or {}).get("artifacts")
            if not isinstance(listing, dict):
                return None
            try:
                enforcer = enforcer_from_files(
                    self.store.get_tree(listing), f"snapshot of {r['receipt_hash']}"
                )
            except FabricError as exc:  # a blob of A missing or corrupt: nothing is served, and why
                self.last_health = {
                    "status": "degraded",
                    "detail": f"the A of deployment {r['receipt_hash']} cannot be restored: {exc}",
                }
                return None
            self.active = Active(
                enforcer=enforcer,
                env=self.env,
                generation_receipt_hash=gen["receipt_hash"],
                deployed_at=str(r.get("time")),
                deployment_receipt_hash=r["receipt_hash"],
                rules=rule_hashes(enforcer),
            )
            self.last_health = {"status": "ok", "detail": "restored from the ledger"}
            return enforcer.hash
        return None

    # -- following a deployment another process of the fleet made ----------------------------

    def follow(self, deployment_receipt_hash: str) -> str | None:
        """Switch to the A of a successful deployment (or rollback) another daemon process
        receipted: boot it from the store's verified snapshot, run its golden cases (the same
        boot hook and health check as :meth:`deploy`), then switch. Appends no receipt (the
        deploying process did). Returns None once it serves that A, else why it does not (the
        old A keeps serving)."""
        with self._deploy_lock:
            active = self.active
            if active is not None and active.deployment_receipt_hash == deployment_receipt_hash:
                return None
            try:
                r = self.store.find(deployment_receipt_hash)
                if r is None or r.get("kind") not in ("deployment", "rollback") or r.get("env") != self.env:
                    return f"{deployment_receipt_hash} is not a deployment of {self.env} in the ledger"
                if ((r.get("gates") or {}).get("operational") or {}).get("status") != "PASS":
                    return f"deployment {deployment_receipt_hash} did not pass its operational gate"
                gen_hash = str((r.get("inputs") or {}).get("generation_receipt_hash"))
                gen = self.store.find(gen_hash)
                listing = (gen or {}).get("outputs", {}).get("artifacts")
                if gen is None or not isinstance(listing, dict):
                    return f"the generation receipt {gen_hash} of {deployment_receipt_hash} is missing"
                enforcer = enforcer_from_files(
                    self.store.get_tree(listing), f"snapshot of {deployment_receipt_hash}"
                )
                if self.boot_hook is not None:
                    self.boot_hook(enforcer)
                results = [run_case(enforcer, c) for c in enforcer.golden_cases()]
                failed = [c["scenario"] for c in results if not c["ok"]]
                if failed:
                    return (
                        f"health check failed: {len(failed)} of {len(results)} golden cases failed "
                        f"({', '.join(failed[:5])})"
                    )
            except Exception as exc:  # any failure: the old A keeps serving, and why is reported
                return f"cannot boot the A of deployment {deployment_receipt_hash}: {exc}"
            self.active = Active(
                enforcer=enforcer,
                env=self.env,
                generation_receipt_hash=gen_hash,
                deployed_at=str(r.get("time")),
                deployment_receipt_hash=deployment_receipt_hash,
                rules=rule_hashes(enforcer),
            )
            self.last_health = {"status": "ok", "detail": f"following deployment {deployment_receipt_hash}"}
            return None

    # -- deploying ----------------------------------------------------------------------------

    def deploy(
        self,
        enforcer_path: Path,
        generation_receipt_hash: str,
        *,
        kind: str = "deployment",
        extra: Mapping[str, Any] | None = None,
    ) -> DeployResult:
        """Verify, boot, health-check and switch. Never raises for a failed step: the failure is
        receipted and the old A keeps serving. Raises :class:`InputError` only when the request
        names no receipted A at all (nothing changes and nothing is receipted)."""
        with self._deploy_lock:
            return self._deploy(enforcer_path, generation_receipt_hash, kind, dict(extra or {}))

    def _deploy(self, path: Path, receipt_hash: str, kind: str, extra: dict[str, Any]) -> DeployResult:
        started = time.monotonic()
        from finops_fabric.audit import require_verified_ledger

        require_verified_ledger(self.store, f"the deployment to {self.env} is refused")
        gen = self.store.find(receipt_hash)
        if gen is None or gen.get("kind") != "generation":
            raise CheckFailed(
                f"{receipt_hash} is not a generation receipt in the store {self.store.home}",
                code="deploy.no_receipt",
            )
        if self.env == "production":  # compliance owns production: its O must be approved
            from finops_fabric.approvals import require_approved

            require_approved(self.store, gen)
        expected = str((gen.get("outputs") or {}).get("enforcer_hash"))
        old = self.active
        evidence: dict[str, Any] = {"enforcer": str(path)}
        enforcer: Enforcer | None = None
        reason: str | None = None
        step = "verify"
        try:
            enforcer = load_enforcer(path)
            if enforcer.hash != expected:
                raise CheckFailed(
                    f"A at {path} has hash {enforcer.hash}, but its generation receipt {receipt_hash} "
                    f"names {expected}",
                    code="deploy.hash_mismatch",
                )
            listing = (gen.get("outputs") or {}).get("artifacts")
            if isinstance(listing, dict):
                actual = {p: sha256_hex(b) for p, b in enforcer.files.items()}
                if actual != listing:
                    raise CheckFailed(
                        f"A at {path} does not hold exactly the artifacts its receipt lists",
                        code="deploy.artifacts",
                    )
            evidence["verify"] = f"every artifact hash matches the manifest and receipt {receipt_hash}"
            step = "boot"
            if self.boot_hook is not None:
                self.boot_hook(enforcer)
            evidence["boot"] = f"loaded {len(enforcer.rule_artifacts())} rule modules in-process"
            step = "health"
            cases = enforcer.golden_cases()
            results = [run_case(enforcer, c) for c in cases]
            failed = [c for c in results if not c["ok"]]
            evidence["health"] = {
                "golden_cases": len(results),
                "passed": len(results) - len(failed),
                "failed": [{"scenario": c["scenario"], "problems": c["problems"]} for c in failed],
            }
            if failed:
                raise CheckFailed(
                    f"health check failed: {len(failed)} of {len(results)} golden cases failed "
                    f"({', '.join(c['scenario'] for c in failed[:5])})",
                    code="deploy.health",
                )
        except Exception as exc:  # any failure of verify/boot/health: the old A keeps serving
            reason = f"{step} failed: {exc}"
            enforcer = None
        new_rules = rule_hashes(enforcer) if enforcer is not None else {}
        old_rules = old.rules if old is not None else {}
        if enforcer is not None:
            restarted = sorted(r for r in new_rules if old_rules.get(r) != new_rules[r])
            kept = sorted(r for r in new_rules if old_rules.get(r) == new_rules[r])
            removed = sorted(r for r in old_rules if r not in new_rules)
        else:
            restarted, kept, removed = [], sorted(old_rules), []
        now = now_utc()
        body: dict[str, Any] = {
            "kind": kind,
            "event": "deploy",
            "time": _stamp(now),
            "env": self.env,
            "inputs": {
                "enforcer_hash": expected,
                "generation_receipt_hash": receipt_hash,
                "ontology_hash": (gen.get("inputs") or {}).get("ontology_hash"),
                "previous_enforcer_hash": old.hash if old is not None else None,
                "previous_deployment_receipt_hash": old.deployment_receipt_hash if old is not None else None,
            },
            "gates": {
                "operational": {
                    "status": "PASS" if reason is None else "FAIL",
                    "evidence": {**evidence, **({"reason": reason} if reason else {})},
                }
            },
            "outputs": {
                "enforcer_hash": expected if reason is None else (old.hash if old is not None else None),
                "serving": expected if reason is None else (old.hash if old is not None else None),
                "restarted": restarted,
                "kept": kept,
                "removed": removed,
                "switch_ms": None,
            },
            **extra,
        }
        if reason is None:
            assert enforcer is not None
            body["outputs"]["switch_ms"] = round((time.monotonic() - started) * 1000, 1)
            sealed = self.store.append(body)
            # The switch: one reference assignment. Requests that already read the old
            # `active` finish with it; every later request sees the new one.
            self.active = Active(
                enforcer=enforcer,
                env=self.env,
                generation_receipt_hash=receipt_hash,
                deployed_at=_stamp(now),
                deployment_receipt_hash=sealed["receipt_hash"],
                rules=new_rules,
            )
            self.last_health = {"status": "ok", "detail": evidence.get("health")}
        else:
            sealed = self.store.append(body)
        result = DeployResult(reason is None, sealed, restarted, kept, removed, reason)
        for callback in self.on_deployed:
            callback(result)
        return result


def enforcer_from_files(files: dict[str, bytes], where: str) -> Enforcer:
    """Verify a snapshot (path → bytes) of A against its manifest and load it."""
    manifest = parse_manifest(files["manifest.json"], where)
    problems = check_files(files, manifest)
    if problems:
        raise CheckFailed(f"{where} does not match its manifest", code="enforcer.tampered")
    return Enforcer(where, files, manifest, enforcer_hash_of_manifest(files["manifest.json"]))
