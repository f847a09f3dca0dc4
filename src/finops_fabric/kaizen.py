"""Kaizen: prove that a newer generator changes A's bytes but not its behaviour (SCENARIOS 6.2).

:func:`kaizen` runs these steps in order; each raises with its own code or returns::

    kaizen.generators  both versions are installed with their released source (an unknown
                       version is an InputError, exit 2) and they are two different versions
    kaizen.ontology    O passes the ontology gate and the invariant gate, as for ``mu generate``
    kaizen.build       A_old and A_new are built from the same model of O without the store's
                       cache, each twice (determinism: the second builds run in a forked copy of
                       this process made after the first ones, and must equal them file for file),
                       written to clean temporary directories and loaded from there with every
                       artifact hash verified; both manifests name hash(O)
    kaizen.compare     the full decision JSON (all but ``enforcer_hash``, which must differ) of
                       A_old and A_new on every case, and each of them against the reference
                       interpreter in the policy language of its generator (decision, fired
                       rules, notifications, audit entries)

The cases: compliance's golden cases; transactions with the inputs language 1.1 refuses
(:func:`input_cases`: undeclared types that look like declared ones, a missing type, negative,
non-finite, spaced, exponent and binary-float amounts, undeclared and missing levels); the case
set complete for O in the language of each generator
(:func:`finops_fabric.analysis.cases.kaizen_cases`: per type, every amount × level atom with
every threshold exactly and a cent either side, every combination of the atoms each rule reads,
each effect rule's with every decision that can occur; the README gives the argument why
agreeing on it is agreeing on every transaction, and what that assumes of a generator), or,
for an O the analysis cannot cut exactly, the sampled set it replaces (the golden gate's
boundary comparison without thinning and every rule's edges; ``case_set.kind`` says which);
and ``random`` seeded random transactions over O's vocabulary (odd JSON types included), the
second line. Duplicates are compared once (see :func:`cases`). The case set is derived in a
forked child while the enforcers are built and loaded, and from 5,000 cases on they are
compared in one forked process per CPU.

Two generators of different policy languages (v2 → v3: 1.0 → 1.1) are not behaviour-equivalent
by design: every case the newer language's input checks reject is a counterexample, and each
listed one names those checks (``input_checks``); so is every case holding a decimal a rule
reads that 1.0 reads (trimmed) and 1.1 does not, and each listed one names those fields
(``strict_decimals``, e.g. ``attributes.score`` for ``" 0.75 "``); ``counterexamples_by_language``
counts the counterexamples they explain, so an operator sees that nothing else changed.

The verdict goes into a signed kaizen receipt appended to the store's ledger, also when the
generators disagree: a generator that changes behaviour is refused as a kaizen (such a change
must go through compliance as a ΔO).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import random
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from finops_fabric import generators
from finops_fabric import model as m
from finops_fabric.enforcer import MANIFEST, Enforcer, load_enforcer
from finops_fabric.errors import CheckFailed, InputError
from finops_fabric.golden import boundary_cases, rule_cases, run_case
from finops_fabric.interpreter import Interpreter, comparable
from finops_fabric.pipeline import load_ontology, quiet, schema_hash, validate, write_tree
from finops_fabric.store import Store

__all__ = ["CATEGORIES", "DEFAULT_RANDOM", "DEFAULT_SEED", "KaizenResult", "kaizen", "random_cases"]

Progress = Callable[[str], None]

CATEGORIES = ("golden", "inputs", "complete", "boundary", "rule_edges", "random")
DEFAULT_RANDOM = 2000
DEFAULT_SEED = 6_2
#: At most this many counterexamples are listed (in the JSON and the receipt); all are counted.
LISTED = 20
CENT = Decimal("0.01")


@dataclass
class KaizenResult:
    from_generator: dict[str, str]
    to_generator: dict[str, str]
    ontology_hash: str
    from_enforcer_hash: str
    to_enforcer_hash: str
    artifacts_identical: int
    artifacts_differing: int
    seed: int
    random: int
    cases: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0))
    counterexamples: list[dict[str, Any]] = field(default_factory=list)
    counterexamples_total: int = 0
    #: Counterexamples explained by the newer policy language's input checks (None: same language).
    counterexamples_by_language: int | None = None
    languages: dict[str, str] = field(default_factory=dict)
    oracle: list[dict[str, Any]] = field(default_factory=list)
    oracle_total: dict[str, int] = field(default_factory=lambda: {"from": 0, "to": 0})
    golden: dict[str, dict[str, Any]] = field(default_factory=dict)
    gates: dict[str, dict[str, Any]] = field(default_factory=dict)
    receipt: dict[str, Any] | None = None
    #: What the cases are: ``kind`` "complete" (:func:`finops_fabric.analysis.cases.kaizen_cases`)
    #: with its counts, or "sampled" (with the reason the complete set could not be made).
    case_set: dict[str, Any] = field(default_factory=dict)

    @property
    def cases_compared(self) -> int:
        return sum(self.cases.values())

    @property
    def behaviour_equivalent(self) -> bool:
        return self.counterexamples_total == 0

    @property
    def accepted(self) -> bool:
        """A kaizen: the same behaviour, the oracle's, and compliance's golden cases pass."""
        return (
            self.behaviour_equivalent
            and self.oracle_total["to"] == 0
            and not self.golden.get("to", {}).get("failed")
        )

    @property
    def verdict(self) -> str:
        if not self.behaviour_equivalent:
            return "behaviour_changed"
        if self.oracle_total["to"]:
            return "disagrees_with_interpreter"
        if not self.accepted:
            return "golden_cases_failed"
        return "equivalent"

    def to_dict(self) -> dict[str, Any]:
        return {
            "behaviour_equivalent": self.behaviour_equivalent,
            "accepted": self.accepted,
            "verdict": self.verdict,
            "from": self.from_generator["version"],
            "to": self.to_generator["version"],
            "from_generator": dict(self.from_generator),
            "to_generator": dict(self.to_generator),
            "ontology_hash": self.ontology_hash,
            "from_enforcer_hash": self.from_enforcer_hash,
            "to_enforcer_hash": self.to_enforcer_hash,
            "artifacts": {"identical": self.artifacts_identical, "differing": self.artifacts_differing},
            "receipt_hash": self.receipt["receipt_hash"] if self.receipt else None,
            "cases_compared": self.cases_compared,
            "cases_by_category": dict(self.cases),
            "case_set": dict(self.case_set),
            "random": {"count": self.random, "seed": self.seed},
            "counterexamples": list(self.counterexamples),
            "counterexamples_total": self.counterexamples_total,
            "languages": dict(self.languages),
            "counterexamples_by_language": self.counterexamples_by_language,
            "interpreter_disagreements": list(self.oracle),
            "interpreter_disagreements_total": dict(self.oracle_total),
            "golden": self.golden,
        }


# --- the cases ---------------------------------------------------------------------------------


def random_cases(policy: m.Policy, count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` transactions drawn with ``random.Random(seed)`` from O's vocabulary: its types,
    levels, thresholds (±0.01) and compared values, plus unknown, missing and ill-typed ones."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test transactions, not a secret
    edges: set[Decimal] = set()
    values: dict[str, set[object]] = {}
    for rule in policy.rules:
        if isinstance(rule, m.ApprovalRule | m.NotificationRule) and rule.threshold is not None:
            edges.update((rule.threshold - CENT, rule.threshold, rule.threshold + CENT))
        if isinstance(rule, m.RestrictionRule):
            for leaf in m.condition_leaves(rule.condition):
                pool = values.setdefault(leaf.attribute, set())
                for v in leaf.values if isinstance(leaf, m.Membership) else (leaf.value,):
                    if isinstance(v, Decimal):
                        pool.update(str(x) for x in (v - CENT, v, v + CENT))
                        if leaf.attribute == "amount":
                            edges.update((v - CENT, v, v + CENT))
                    else:
                        pool.add(v)
    top = max(edges, default=Decimal("1000"))
    missing = object()
    types_: list[object] = [t.code for t in policy.types] + ["zz_unknown_type", missing, 7]
    levels: list[object] = [lv.code for lv in policy.levels] + ["ZZ-unknown-level", missing, 3]
    people: list[object] = ["u-1", "u-2", 7, missing]
    odd: list[object] = ["abc", "", "1e5", " 42 ", "+7", "-5", "NaN", 1.5, True, missing]
    pools = {k: sorted(v, key=str) for k, v in sorted(values.items())}
    extra: list[object] = ["zz-not-listed", 1, 0, True, 0.5, missing]
    sorted_edges = sorted(edges)
    out: list[dict[str, Any]] = []
    for i in range(count):
        tx: dict[str, Any] = {"id": f"random-{seed}-{i}"}
        pick = rng.random()
        amount: object
        if pick < 0.5 and sorted_edges:
            amount = str(rng.choice(sorted_edges))
        elif pick < 0.8:
            amount = str((Decimal(rng.randrange(0, int(top * 2 * 100) + 2)) * CENT).quantize(CENT))
        elif pick < 0.9:
            amount = rng.randrange(0, int(top * 2) + 2)
        else:
            amount = rng.choice(odd)
        for key, value in (
            ("type", rng.choice(types_)),
            ("amount", amount),
            ("actor_level", rng.choice(levels)),
            ("approver_id", rng.choice(people)),
            ("executor_id", rng.choice(people)),
        ):
            if value is not missing:
                tx[key] = value
        shape = rng.random()
        if shape < 0.9:
            attrs: dict[str, object] = {}
            for name, choices in pools.items():
                value = rng.choice(choices + extra)
                if value is not missing and rng.random() < 0.95:
                    attrs[name] = value
            tx["attributes"] = attrs
        elif shape < 0.95:
            tx["attributes"] = ["not", "a", "dict"]
        out.append(tx)
    return out


# Latin letters and a Cyrillic letter that looks the same.
_HOMOGLYPHS = {"a": "\u0430", "c": "\u0441", "e": "\u0435", "o": "\u043e", "p": "\u0440", "x": "\u0445"}
_FULLWIDTH = {chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)}


def _look_alikes(code: str) -> list[str]:
    """Codes that a person (or a careless client) could take for ``code``, none equal to it."""
    out = [code.upper(), code.lower(), code.title(), code + " ", " " + code, code + "\u200b"]
    out.append("".join(_FULLWIDTH.get(ch, ch) for ch in code))
    for latin, cyrillic in _HOMOGLYPHS.items():  # one letter at a time, its first occurrence
        if latin in code:
            out.append(code.replace(latin, cyrillic, 1))
    return [c for c in dict.fromkeys(out) if c != code]


#: Amounts language 1.1 refuses (a value of _MISSING_FIELD: no amount at all).
_MISSING_FIELD = object()
_BAD_AMOUNTS: tuple[object, ...] = (
    "-0.01", "-100", Decimal("-5"), -7, Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"),
    Decimal("-Infinity"), " 100", "100 ", "1e5", "1E+5", "0x10", "1_000", "\uff11\uff10\uff10", "",
    "abc", 100.0, 0.5, True, None, [], {}, _MISSING_FIELD,
)  # fmt: skip


def input_cases(policy: m.Policy) -> list[dict[str, Any]]:
    """Transactions whose type, amount or actor level language 1.1 refuses (one field at a time,
    the others valid): every declared type's look-alikes (case, spaces, a zero-width space,
    full-width and Cyrillic letters) and an unknown code, a missing or non-text type; per declared
    type, negative, non-finite, spaced, exponent, non-decimal and binary-float amounts and a
    missing one; per declared type, every level's look-alikes, an unknown, a missing and a
    numeric level. The plain amount is 1000 and the level the highest one."""
    types_ = sorted(t.code for t in policy.types)
    levels = [lv.code for lv in policy.levels]
    top = levels[-1] if levels else "ZZ-unknown-level"

    def tx(n: int, tx_type: object, amount: object, level: object) -> dict[str, Any]:
        out: dict[str, Any] = {"id": f"input-{n}", "approver_id": "u-1", "executor_id": "u-2"}
        for key, value in (("type", tx_type), ("amount", amount), ("actor_level", level)):
            if value is not _MISSING_FIELD:
                out[key] = value
        out["attributes"] = {}
        return out

    bad_types: list[object] = [c for t in types_ for c in _look_alikes(t)]
    bad_types += ["zz_unknown_type", "", 7, None, _MISSING_FIELD]
    cases = [tx(0, t, "1000", top) for t in bad_types]
    for t in types_:
        cases += [tx(0, t, a, top) for a in _BAD_AMOUNTS]
        bad_levels = [c for lv in levels for c in _look_alikes(lv)]
        cases += [tx(0, t, "1000", lv) for lv in [*bad_levels, "ZZ-unknown-level", 3, None, _MISSING_FIELD]]
    for n, case in enumerate(cases):
        case["id"] = f"input-{n}"
    return cases


def complete_or_sampled(policy: m.Policy, languages: Sequence[str]) -> tuple[dict[str, Any], list[Any]]:
    """The case set's description and its (category, transaction) pairs: the set complete for O
    in each of ``languages``, or, for an O the analysis cannot cut exactly or whose set would
    exceed its budget, every boundary of the golden gate and every rule's edges ("sampled")."""
    from finops_fabric.analysis.cases import kaizen_cases
    from finops_fabric.analysis.fields import Unsupported
    from finops_fabric.analysis.mdd import BudgetExceeded

    try:
        made = kaizen_cases(policy, languages)
    except (Unsupported, BudgetExceeded) as exc:
        pairs: list[Any] = [("boundary", tx) for tx in boundary_cases(policy)]
        pairs += [("rule_edges", tx) for rule in policy.rules for tx in rule_cases(policy, rule)]
        return {"kind": "sampled", "reason": str(exc), "languages": sorted(set(languages))}, pairs
    return made.describe(), [("complete", tx) for tx in made.cases]


def _categories(
    policy: m.Policy, count: int, seed: int, languages: Sequence[str], described: dict[str, Any]
) -> Iterator[tuple[str, dict[str, Any]]]:
    for case in policy.golden:
        yield "golden", case.transaction()
    for tx in input_cases(policy):
        yield "inputs", tx
    description, pairs = complete_or_sampled(policy, languages)
    described.update(description)
    yield from pairs
    for tx in random_cases(policy, count, seed):
        yield "random", tx


def cases(
    policy: m.Policy,
    count: int,
    seed: int,
    languages: Sequence[str] = ("1.0",),
    described: dict[str, Any] | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """Every case kaizen compares, with its category, each once (the first category keeps it).
    ``described`` receives the description of the case set (see :func:`complete_or_sampled`)."""
    seen: set[str] = set()
    out: list[tuple[str, dict[str, Any]]] = []
    for category, tx in _categories(policy, count, seed, languages, {} if described is None else described):
        key = _key(tx)
        if key not in seen:
            seen.add(key)
            out.append((category, tx))
    return out


def _case_list(
    policy: m.Policy, count: int, seed: int, languages: Sequence[str]
) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]:
    """:func:`cases` and the description of the case set."""
    described: dict[str, Any] = {}
    return cases(policy, count, seed, languages, described), described


def _key(tx: dict[str, Any]) -> str:
    """Two transactions that differ only in their id are one case (``repr`` tells 1 from True)."""
    return repr(sorted((k, repr(v)) for k, v in tx.items() if k != "id"))


# --- building and comparing --------------------------------------------------------------------


def _generate(gen: generators.Generator, policy: m.Policy, ontology_hash: str) -> dict[str, bytes]:
    try:
        return gen.build(policy, ontology_hash, None)
    except (ValueError, KeyError, TypeError) as e:
        raise CheckFailed(f"generator v{gen.version} failed on O: {e}", code="kaizen.build_failed") from e


def _digests(files: dict[str, bytes]) -> dict[str, str]:
    return {p: hashlib.sha256(data).hexdigest() for p, data in files.items()}


def _second_builds(
    gens: Sequence[generators.Generator], policy: m.Policy, ontology_hash: str
) -> list[dict[str, str]]:
    """The determinism check's second build of each generator, as the SHA-256 of every file."""
    return [_digests(_generate(gen, policy, ontology_hash)) for gen in gens]


def _same(gen: generators.Generator, files: dict[str, bytes], again: dict[str, str]) -> None:
    """The determinism check: a second build (``again``, its digests) equals the first."""
    first = _digests(files)
    if first != again:
        differing = sorted(p for p in set(first) | set(again) if first.get(p) != again.get(p))
        raise CheckFailed(
            f"generator v{gen.version} is not deterministic on O: {', '.join(differing[:5])} differ "
            "between two builds",
            code="kaizen.not_deterministic",
        )


def _build(
    gen: generators.Generator, policy: m.Policy, ontology_hash: str, workdir: Path
) -> tuple[Enforcer, dict[str, bytes]]:
    """A built by ``gen`` from O twice (both builds alike), written to ``workdir`` and loaded
    from there with every artifact hash verified."""
    files = _generate(gen, policy, ontology_hash)
    _same(gen, files, _digests(_generate(gen, policy, ontology_hash)))
    return _load(gen, files, ontology_hash, workdir), files


def _load(gen: generators.Generator, files: dict[str, bytes], ontology_hash: str, workdir: Path) -> Enforcer:
    root = workdir / f"A-v{gen.version}"
    root.mkdir()
    write_tree(root, files, durable=False)
    enforcer = load_enforcer(root)
    if enforcer.ontology_hash != ontology_hash:
        raise CheckFailed(
            f"A made by generator v{gen.version} names O {enforcer.ontology_hash}, not {ontology_hash}",
            code="kaizen.ontology_changed",
        )
    return enforcer


def _forkable() -> bool:
    """More than one CPU, fork, and no other thread (forking a threaded process is unsafe)."""
    import os
    import threading

    return (os.cpu_count() or 1) > 1 and hasattr(os, "fork") and threading.active_count() == 1


def _decide(enforcer: Enforcer, tx: dict[str, Any]) -> dict[str, Any]:
    """The decision JSON without ``enforcer_hash``; a crash is a decision too (its class)."""
    try:
        d: dict[str, Any] = enforcer.decide(tx).to_dict()
    except Exception as e:  # a defective generator may crash; that is a behaviour like any other
        return {"error": type(e).__name__, "message": str(e)}
    d.pop("enforcer_hash", None)
    return d


def _golden(enforcer: Enforcer) -> dict[str, Any]:
    results = [run_case(enforcer, case) for case in enforcer.golden_cases()]
    return {
        "passed": sum(1 for r in results if r["ok"]),
        "failed": sorted(r["scenario"] for r in results if not r["ok"]),
    }


# --- comparing, in two processes when there are many cases ------------------------------------------

#: Below this many cases one process compares them all (a fork costs more than it saves).
PARALLEL_FROM = 5_000
#: At most this many processes compare cases (one per CPU).
WORKERS = 4


class _Oracles:
    """The reference interpreter in each generator's policy language; ``changed`` is the one of
    the newer language when the two differ (its input checks explain the counterexamples)."""

    def __init__(self, policy: m.Policy, old: str, new: str) -> None:
        self.old = Interpreter(policy, old)
        self.new = self.old if new == old else Interpreter(policy, new)
        self.changed: Interpreter | None = None
        if new != old:
            self.changed = max((self.old, self.new), key=lambda i: tuple(map(int, i.language.split("."))))


def _compare(
    old: Enforcer, new: Enforcer, oracles: _Oracles, cases: Sequence[tuple[str, dict[str, Any]]]
) -> dict[str, Any]:
    """Old A against new A, and each against the interpreter, on ``cases``: counts per category,
    the first :data:`LISTED` counterexamples of each kind, and every total."""
    part: dict[str, Any] = {
        "cases": dict.fromkeys(CATEGORIES, 0),
        "counterexamples": [],
        "counterexamples_total": 0,
        "counterexamples_by_language": 0,
        "oracle": [],
        "oracle_total": {"from": 0, "to": 0},
    }
    for category, tx in cases:
        part["cases"][category] += 1
        a, b = _decide(old, tx), _decide(new, tx)
        if a != b:
            part["counterexamples_total"] += 1
            checks = strict = None
            if oracles.changed is not None:
                checks = sorted({r for r, _ in oracles.changed.input_checks(tx)})
                strict = oracles.changed.strict_decimals(tx)
                part["counterexamples_by_language"] += bool(checks or strict)
            if len(part["counterexamples"]) < LISTED:
                ce = {"category": category, "transaction": tx, "old_decision": a, "new_decision": b}
                if checks is not None:
                    ce["input_checks"] = checks
                if strict:
                    ce["strict_decimals"] = strict
                part["counterexamples"].append(ce)
        oracle_from = oracles.old.decide(tx).comparable()
        oracle_to = oracle_from if oracles.new is oracles.old else oracles.new.decide(tx).comparable()
        seen_from = None if "error" in a else comparable(a)
        seen_to = seen_from if b == a else (None if "error" in b else comparable(b))
        for side, d, seen, oracle in (("from", a, seen_from, oracle_from), ("to", b, seen_to, oracle_to)):
            if seen != oracle:
                part["oracle_total"][side] += 1
                if len(part["oracle"]) < LISTED:
                    part["oracle"].append(
                        {
                            "category": category,
                            "generator": side,
                            "transaction": tx,
                            "decision": d,
                            "interpreter": list(oracle),
                        }
                    )
    return part


def _merge(result: KaizenResult, part: dict[str, Any]) -> None:
    for category, n in part["cases"].items():
        result.cases[category] += n
    result.counterexamples += part["counterexamples"][: LISTED - len(result.counterexamples)]
    result.counterexamples_total += part["counterexamples_total"]
    if result.counterexamples_by_language is not None:
        result.counterexamples_by_language += part["counterexamples_by_language"]
    result.oracle += part["oracle"][: LISTED - len(result.oracle)]
    for side, n in part["oracle_total"].items():
        result.oracle_total[side] += n


def _compare_in_parallel(
    old: Enforcer, new: Enforcer, interp: _Oracles, cases: Sequence[tuple[str, dict[str, Any]]]
) -> list[dict[str, Any]]:
    """The parts of :func:`_compare` over ``cases``, in order. With many cases, more than one CPU
    and no other thread running, the cases are cut into one contiguous slice per CPU (at most
    :data:`WORKERS`): each slice but the first is compared in a forked child (which inherits both
    loaded enforcers and the interpreters) while this process compares the first; each child's
    part comes back pickled through its own pipe. If a child fails for any reason its slice is
    compared here."""
    import os

    workers = min(os.cpu_count() or 1, WORKERS)
    if len(cases) < PARALLEL_FROM or not _forkable():
        return [_compare(old, new, interp, cases)]
    size = -(-len(cases) // workers)
    slices = [cases[i : i + size] for i in range(0, len(cases), size)]
    children = [_fork(functools.partial(_compare, old, new, interp, part)) for part in slices[1:]]
    parts = [_compare(old, new, interp, slices[0])]
    for part, child in zip(slices[1:], children, strict=True):
        got = _collect(child)
        parts.append(got if got is not None else _compare(old, new, interp, part))
    return parts


def _fork(work: Callable[[], Any]) -> tuple[int, int] | None:
    """A forked child doing ``work`` and sending its pickled result through a pipe: (pid, the
    pipe's read end), or None when no child could be started. The child leaves without any
    clean-up (``os._exit``), with status 1 if ``work`` failed."""
    import os
    import pickle

    read_fd, write_fd = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_fd)
        os.close(write_fd)
        return None
    if pid == 0:
        code = 0
        try:
            os.close(read_fd)
            view = memoryview(pickle.dumps(work()))
            while view:
                view = view[os.write(write_fd, view) :]
        except BaseException:  # the parent does this work itself
            code = 1
        os._exit(code)
    os.close(write_fd)
    return pid, read_fd


def _collect(child: tuple[int, int] | None) -> Any:
    """What a child of :func:`_fork` sent, or None if it failed (the caller then does the work)."""
    import os
    import pickle

    if child is None:
        return None
    pid, read_fd = child
    chunks = []
    try:
        while chunk := os.read(read_fd, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        return None
    try:
        return pickle.loads(b"".join(chunks))  # noqa: S301 - our own child, through our own pipe
    except Exception:  # the caller does the work instead
        return None


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _gate(status: str, **evidence: Any) -> dict[str, Any]:
    return {"status": status, "evidence": evidence}


def kaizen(
    ontology: Path,
    from_version: str,
    to_version: str,
    store: Store,
    *,
    count: int = DEFAULT_RANDOM,
    seed: int = DEFAULT_SEED,
    schemas: Sequence[Path] = (),
    progress: Progress = quiet,
) -> KaizenResult:
    """Compare the behaviour of A built by ``from_version`` and by ``to_version`` from O, and
    append the signed kaizen receipt to the store's ledger (see the module documentation)."""
    store.require()
    if count < 0:
        raise InputError(f"--random={count}: the number of random transactions cannot be negative")
    old_gen, new_gen = generators.get(from_version), generators.get(to_version)
    if old_gen.version == new_gen.version:
        raise InputError(
            f"--from-generator and --to-generator are both v{old_gen.version}: kaizen compares two versions",
            code="kaizen.same_generator",
            hint="run `mu generators` to list the versions this installation has",
        )
    progress(f"loading {ontology}")
    onto = load_ontology(ontology)
    progress("ontology gate and invariant gate")
    v = validate(onto, schemas)
    if not v.conforms or v.policy is None:
        problems = "; ".join(f.message for f in v.violations[:5])
        raise CheckFailed(
            f"O does not pass the gates of `mu generate`, so there is no A to compare: {problems}",
            code="kaizen.ontology_rejected",
            hint="run `mu validate` for every finding",
        )
    policy = v.policy
    gates = dict(v.gates)
    languages = (old_gen.language, new_gen.language)
    progress("deriving the case set complete for O")
    # (in a forked child while this process builds and loads both enforcers, when there is one)
    deriving = _fork(functools.partial(_case_list, policy, count, seed, languages)) if _forkable() else None
    workdir = Path(tempfile.mkdtemp(prefix="mu-kaizen-"))
    try:
        progress(f"building A with generator v{old_gen.version} and v{new_gen.version}, twice each")
        gens = (old_gen, new_gen)
        old_files, new_files = (_generate(gen, policy, onto.hash) for gen in gens)
        # the determinism check's second builds: in a forked child (a copy of this process after
        # the first builds) while this one loads both, or here
        second = _fork(functools.partial(_second_builds, gens, policy, onto.hash)) if _forkable() else None
        try:
            old = _load(old_gen, old_files, onto.hash, workdir)
            new = _load(new_gen, new_files, onto.hash, workdir)
        finally:
            again = _collect(second)
        if again is None:
            again = _second_builds(gens, policy, onto.hash)
        _same(old_gen, old_files, again[0])
        _same(new_gen, new_files, again[1])
        gates["determinism"] = _gate(
            "PASS",
            builds=2,
            from_enforcer_hash=old.hash,
            to_enforcer_hash=new.hash,
        )
        paths = set(old_files) | set(new_files)
        identical = sum(1 for p in paths if p != MANIFEST and old_files.get(p) == new_files.get(p))
        result = KaizenResult(
            from_generator=old_gen.describe(),
            to_generator=new_gen.describe(),
            ontology_hash=onto.hash,
            from_enforcer_hash=old.hash,
            to_enforcer_hash=new.hash,
            artifacts_identical=identical,
            artifacts_differing=len(paths) - 1 - identical,
            seed=seed,
            random=count,
        )
        result.golden = {"from": _golden(old), "to": _golden(new)}
        oracles = _Oracles(policy, old_gen.language, new_gen.language)
        result.languages = {"from": old_gen.language, "to": new_gen.language}
        if oracles.changed is not None:
            result.counterexamples_by_language = 0
        derived = _collect(deriving)
        deriving = None
        compared, described = derived if derived is not None else _case_list(policy, count, seed, languages)
        result.case_set.update(described)
        progress(
            f"comparing decisions on {len(compared)} cases: golden cases, refused inputs, the "
            f"{result.case_set['kind']} set, random transactions"
        )
        for part in _compare_in_parallel(old, new, oracles, compared):
            _merge(result, part)
    finally:
        _collect(deriving)  # (a child still running when a build failed)
        shutil.rmtree(workdir, ignore_errors=True)
    golden_ok = not result.golden["from"]["failed"] and not result.golden["to"]["failed"]
    gates["golden"] = _gate(
        "PASS" if golden_ok and not any(result.oracle_total.values()) else "FAIL",
        golden=result.golden,
        interpreter_disagreements=dict(result.oracle_total),
    )
    gates["kaizen"] = _gate(
        "PASS" if result.accepted else "FAIL",
        behaviour_equivalent=result.behaviour_equivalent,
        cases_compared=result.cases_compared,
        counterexamples=result.counterexamples_total,
        languages=dict(result.languages),
        counterexamples_by_language=result.counterexamples_by_language,
        case_set=result.case_set["kind"],
    )
    store.put_object(onto.canonical, "ontology")
    body = {
        "kind": "kaizen",
        "time": _now(),
        "inputs": {
            "ontology_hash": onto.hash,
            "ontology_snapshot": {"kind": "ontology", "digest": onto.hash},
            "ontology_sources": sorted(f.name for f in onto.files),
            "schema_hash": schema_hash(schemas),
            "schemas": sorted(p.name for p in schemas),
            "generator": new_gen.describe(),
            "from_generator": old_gen.describe(),
            "to_generator": new_gen.describe(),
        },
        "outputs": {
            "from_enforcer_hash": old.hash,
            "to_enforcer_hash": new.hash,
            "artifacts": {"identical": result.artifacts_identical, "differing": result.artifacts_differing},
        },
        "ontology_unchanged": True,  # both manifests name hash(O); checked by kaizen.build
        "behaviour_equivalent": result.behaviour_equivalent,
        "accepted": result.accepted,
        "verdict": result.verdict,
        "cases_compared": {**result.cases, "total": result.cases_compared},
        "case_set": dict(result.case_set),
        "random": {"count": count, "seed": seed, "generator": "python random.Random(seed)"},
        "counterexamples": result.counterexamples,
        "counterexamples_total": result.counterexamples_total,
        "languages": dict(result.languages),
        "counterexamples_by_language": result.counterexamples_by_language,
        "interpreter_disagreements": dict(result.oracle_total),
        "gates": gates,
        "findings": [f.to_dict() for f in v.findings],
    }
    # Values in transactions (odd JSON types included) must stay canonical JSON in the receipt.
    body = json.loads(json.dumps(body, default=str))
    progress("signing the kaizen receipt")
    result.receipt = store.append(body)
    return result
