"""hash(O): SHA-256 over the RDFC-1.0 canonical N-Quads of O (pyoxigraph's RDFC_1_0).

RDFC-1.0 is linear when every blank node is told apart by its first-degree hash; only groups
of blank nodes that look alike need the N-degree search, which is exponential in the worst
case ("poison" graphs) and has no work limit in pyoxigraph. So a graph with such groups is
canonicalized in a child process under a time budget and refused with a clear error when the
budget runs out, instead of hanging. The child is a fork of this process when that is safe
(POSIX, no other thread running): it inherits the parsed graph, so nothing is serialized,
re-parsed or imported again; otherwise a fresh interpreter gets the graph as N-Quads.
"""

from __future__ import annotations

import hashlib
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence

import pyoxigraph as ox

from finops_fabric.errors import InputError
from finops_fabric.rdf.load import Statement

DEFAULT_BUDGET_SECONDS = 20.0
BUDGET_ENV = "FABRIC_CANON_BUDGET"


def _canonicalize_in_process(quads: Sequence[ox.Quad]) -> bytes:
    ds = ox.Dataset(quads)
    ds.canonicalize(ox.CanonicalizationAlgorithm.RDFC_1_0)
    out = ox.serialize(ds, format=ox.RdfFormat.N_QUADS)
    assert out is not None
    # oxigraph serializes in its own order; canonical N-Quads are sorted by code point (UTF-8 byte
    # order is code point order). Split on b"\n" only: str.splitlines would also split inside
    # literals at U+0085, U+2028, U+2029 and U+001C..U+001E, which N-Quads leaves unescaped.
    lines = [line + b"\n" for line in out.split(b"\n") if line]
    lines.sort()
    return b"".join(lines)


def _as_quads(triples: Sequence[Statement]) -> Sequence[ox.Quad]:
    """Statements as quads in the default graph (loaded policies already are: no copy then)."""
    default = ox.DefaultGraph()
    if all(isinstance(t, ox.Quad) and t.graph_name == default for t in triples):
        return triples  # type: ignore[return-value]
    return [ox.Quad(t.subject, t.predicate, t.object, default) for t in triples]


def ambiguous_blank_nodes(statements: Sequence[Statement]) -> int:
    """How many blank nodes share their first-degree signature with another (0: linear case).

    The signature is the sorted list of the node's triples (or quads, graph name included)
    with itself written ``_:a`` and any other blank node ``_:z``, exactly the input of
    RDFC-1.0's first-degree hash. One pass; statements without a blank node cost two attribute
    reads and a type check.
    """
    blank = ox.BlankNode
    default = ox.DefaultGraph
    mentions: dict[str, list[str]] = {}
    for t in statements:
        s, o = t.subject, t.object
        g = t.graph_name if isinstance(t, ox.Quad) else None
        named = g is not None and not isinstance(g, default)
        sv = s.value if isinstance(s, blank) else None
        ov = o.value if isinstance(o, blank) else None
        gv = g.value if named and isinstance(g, blank) else None
        sb, ob, gb = sv is not None, ov is not None, gv is not None
        if not (sb or ob or gb):
            continue
        p = str(t.predicate)
        s_text = None if sb else str(s)
        o_text = None if ob else str(o)
        g_text = (None if gb else str(g)) if named else None
        for me in dict.fromkeys(v for v in (sv, ov, gv) if v is not None):
            sig = (
                ("_:a" if sv == me else "_:z") if sb else s_text,
                p,
                ("_:a" if ov == me else "_:z") if ob else o_text,
            )
            text = f"{sig[0]} {sig[1]} {sig[2]}"
            if named:
                text += " " + (("_:a" if gv == me else "_:z") if gb else str(g_text))
            mentions.setdefault(me, []).append(text)
    if not mentions:
        return 0
    sigs = Counter("\n".join(sorted(v)) for v in mentions.values())
    return sum(n for n in sigs.values() if n > 1)


def _budget() -> float:
    raw = os.environ.get(BUDGET_ENV)
    if not raw:
        return DEFAULT_BUDGET_SECONDS
    try:
        value = float(raw)
    except ValueError as e:
        raise InputError(f"{BUDGET_ENV}={raw!r} is not a number of seconds") from e
    return value if value > 0 else DEFAULT_BUDGET_SECONDS


def _over_budget(budget: float) -> InputError:
    return InputError(
        f"canonicalizing O (RDFC-1.0) did not finish within the budget of {budget:g} s: the graph "
        "has many blank nodes that cannot be told apart (a 'poison' graph)",
        code="fabric.canonicalization_budget",
        hint=f"give those blank nodes IRIs or distinguishing properties, or raise {BUDGET_ENV}",
    )


def _fork_is_safe() -> bool:
    return hasattr(os, "fork") and threading.active_count() == 1


def _canonicalize_forked(quads: Sequence[ox.Quad], budget: float) -> bytes:
    """Canonicalize in a forked child that writes the canonical N-Quads to a pipe; kill it when
    the budget runs out. Only called with no other thread alive, so the child holds no lock."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: compute, write, leave without running any parent clean-up
        code = 0
        try:
            os.close(read_fd)
            data = _canonicalize_in_process(quads)
            view = memoryview(data)
            while view:
                view = view[os.write(write_fd, view) :]
        except BaseException:
            code = 1
        os._exit(code)
    os.close(write_fd)
    chunks: list[bytes] = []
    deadline = time.monotonic() + budget
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(read_fd, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    os.kill(pid, signal.SIGKILL)
                    raise _over_budget(budget)
                chunk = os.read(read_fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        os.close(read_fd)
        _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise InputError(
            "canonicalizing O failed in its child process", code="fabric.canonicalization_failed"
        )
    return b"".join(chunks)


def _canonicalize_with_budget(quads: Sequence[ox.Quad], budget: float) -> bytes:
    if _fork_is_safe():
        return _canonicalize_forked(quads, budget)
    return _canonicalize_in_subprocess(quads, budget)


def _canonicalize_in_subprocess(quads: Sequence[ox.Quad], budget: float) -> bytes:
    nq = ox.serialize(quads, format=ox.RdfFormat.N_QUADS)
    assert nq is not None
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "finops_fabric.rdf._canon_worker"],
            input=nq,
            capture_output=True,
            timeout=budget,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise _over_budget(budget) from e
    if proc.returncode != 0:
        raise InputError(
            f"canonicalizing O failed: {proc.stderr.decode('utf-8', 'replace').strip()}",
            code="fabric.canonicalization_failed",
        )
    return proc.stdout


def canonical_dataset_nquads(quads: Sequence[ox.Quad], budget: float | None = None) -> bytes:
    """The RDFC-1.0 canonical N-Quads of a dataset, named graphs kept (sorted lines, UTF-8)."""
    if ambiguous_blank_nodes(quads) == 0:
        return _canonicalize_in_process(quads)
    return _canonicalize_with_budget(quads, _budget() if budget is None else budget)


def canonical_nquads(triples: Sequence[Statement], budget: float | None = None) -> bytes:
    """The RDFC-1.0 canonical N-Quads of the graph (sorted lines, UTF-8)."""
    return canonical_dataset_nquads(_as_quads(triples), budget)


def graph_hash(triples: Sequence[Statement], budget: float | None = None) -> str:
    return "sha256:" + hashlib.sha256(canonical_nquads(triples, budget)).hexdigest()
