"""Multi-valued decision diagrams: the data structure the exact analysis computes with.

A diagram is a function from a box of finite variables (one per field of a transaction: the
authority level, the amount, the approver/executor pair, each attribute; each variable ranges
over the *atoms* of its field, see :mod:`.fields`) to terminal values (booleans for a rule's
"fires", tuples for an outcome signature). Nodes are hash-consed, so two diagrams denote the same
function exactly when they are the same node id: "these two rules decide alike" is an integer
comparison.

A node's children are run-length encoded: ``((end, child), ...)`` with increasing ``end`` (the
last is the variable's domain size) and no two adjacent runs with the same child. An amount
variable with a thousand cells costs what its few distinct children cost, not a thousand.

Every operation counts the nodes it creates; past ``node_budget`` it raises
:class:`BudgetExceeded` (the analysis never runs away, it refuses with the size it reached).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import Any

Runs = tuple[tuple[int, int], ...]
#: A box: for each variable index on the path, the atom indices it may take (None: any).
Box = dict[int, tuple[int, ...]]


_NOTHING = object()


class BudgetExceeded(Exception):
    """More diagram nodes (or regions) than the budget allows."""

    def __init__(self, what: str, size: int, budget: int) -> None:
        super().__init__(f"{what}: {size:,} exceeds the budget of {budget:,}")
        self.what = what
        self.size = size
        self.budget = budget


class Manager:
    """The nodes of every diagram over one ordered list of variables (domain sizes)."""

    def __init__(self, sizes: Sequence[int], node_budget: int = 2_000_000) -> None:
        self.sizes = tuple(sizes)
        self.nvars = len(self.sizes)
        self.node_budget = node_budget
        self.var: list[int] = []  # per node: variable index, nvars for a terminal
        self.runs: list[Runs] = []  # per node: its children (empty for a terminal)
        self.value: list[Any] = []  # per node: the terminal value (None for inner nodes)
        self._unique: dict[tuple[int, Runs], int] = {}
        self._terminals: dict[Hashable, int] = {}
        self._memo: dict[tuple[Hashable, int, int], int] = {}
        self.false = self.terminal(False)
        self.true = self.terminal(True)

    # --- construction ------------------------------------------------------------------------
    def terminal(self, value: Hashable) -> int:
        key = (type(value), value)
        got = self._terminals.get(key)
        if got is None:
            got = len(self.var)
            self.var.append(self.nvars)
            self.runs.append(())
            self.value.append(value)
            self._terminals[key] = got
        return got

    def is_terminal(self, node: int) -> bool:
        return self.var[node] == self.nvars

    def mk(self, var: int, runs: Sequence[tuple[int, int]]) -> int:
        """The node testing ``var`` with these runs (merged and reduced)."""
        merged: list[tuple[int, int]] = []
        for end, child in runs:
            if merged and merged[-1][1] == child:
                merged[-1] = (end, child)
            else:
                merged.append((end, child))
        if len(merged) == 1:
            return merged[0][1]
        key = (var, tuple(merged))
        got = self._unique.get(key)
        if got is None:
            got = len(self.var)
            if got >= self.node_budget:
                raise BudgetExceeded("decision diagram nodes", got, self.node_budget)
            self.var.append(var)
            self.runs.append(key[1])
            self.value.append(None)
            self._unique[key] = got
        return got

    def of_values(self, var: int, values: Sequence[Hashable]) -> int:
        """The diagram of ``var`` taking atom ``i`` to terminal ``values[i]``."""
        runs: list[tuple[int, int]] = []
        prev: object = _NOTHING
        for i, v in enumerate(values):
            if v is prev or (type(v) is type(prev) and v == prev):
                runs[-1] = (i + 1, runs[-1][1])
            else:
                runs.append((i + 1, self.terminal(v)))
                prev = v
        return self.mk(var, runs)

    def of_bools(self, var: int, values: Sequence[bool]) -> int:
        return self.of_values(var, [bool(v) for v in values])

    # --- operations --------------------------------------------------------------------------
    def _runs_at(self, node: int, var: int) -> Runs:
        return self.runs[node] if self.var[node] == var else ((self.sizes[var], node),)

    def apply(self, key: Hashable, fn: Callable[[Any, Any], Hashable], a: int, b: int) -> int:
        """The diagram of ``fn(a(x), b(x))``; ``key`` names ``fn`` in the memo table."""
        memo = self._memo
        mk = (key, a, b)
        got = memo.get(mk)
        if got is not None:
            return got
        va, vb = self.var[a], self.var[b]
        if va == self.nvars and vb == self.nvars:
            got = self.terminal(fn(self.value[a], self.value[b]))
        else:
            v = va if va < vb else vb
            ra, rb = self._runs_at(a, v), self._runs_at(b, v)
            out: list[tuple[int, int]] = []
            i = j = 0
            while i < len(ra) and j < len(rb):
                ea, ca = ra[i]
                eb, cb = rb[j]
                end = ea if ea < eb else eb
                out.append((end, self.apply(key, fn, ca, cb)))
                if ea == end:
                    i += 1
                if eb == end:
                    j += 1
            got = self.mk(v, out)
        memo[mk] = got
        return got

    def map(self, key: Hashable, fn: Callable[[Any], Hashable], a: int) -> int:
        """The diagram of ``fn(a(x))``."""
        return self.apply(("map", key), lambda x, _: fn(x), a, self.false)

    def and_(self, a: int, b: int) -> int:
        if a == self.false or b == self.false:
            return self.false
        if a == self.true:
            return b
        if b == self.true or a == b:
            return a
        return self.apply("and", _and, a, b) if a < b else self.apply("and", _and, b, a)

    def or_(self, a: int, b: int) -> int:
        if a == self.true or b == self.true:
            return self.true
        if a == self.false:
            return b
        if b == self.false or a == b:
            return a
        return self.apply("or", _or, a, b) if a < b else self.apply("or", _or, b, a)

    def not_(self, a: int) -> int:
        return self.apply("not", _not, a, self.false)

    def xor(self, a: int, b: int) -> int:
        if a == b:
            return self.false
        return self.apply("xor", _xor, a, b) if a < b else self.apply("xor", _xor, b, a)

    def any_of(self, nodes: Sequence[int]) -> int:
        """OR of many diagrams, combined pairwise (balanced, so intermediate ones stay small)."""
        items = list(nodes)
        if not items:
            return self.false
        while len(items) > 1:
            items = [
                self.or_(items[i], items[i + 1]) if i + 1 < len(items) else items[i]
                for i in range(0, len(items), 2)
            ]
        return items[0]

    def restrict(self, node: int, var: int, atom: int) -> int:
        """The diagram with ``var`` fixed to ``atom``."""
        if self.var[node] > var:
            return node
        if self.var[node] == var:
            for end, child in self.runs[node]:
                if atom < end:
                    return child
        key = ("restrict", var, atom)
        got = self._memo.get((key, node, 0))
        if got is None:
            got = self.mk(
                self.var[node], [(end, self.restrict(child, var, atom)) for end, child in self.runs[node]]
            )
            self._memo[(key, node, 0)] = got
        return got

    def terminal_values(self, node: int) -> set[Any]:
        """Every terminal value reachable from ``node``."""
        seen: set[int] = set()
        out: set[Any] = set()
        stack = [node]
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            if self.is_terminal(n):
                out.add(self.value[n])
            else:
                stack.extend(child for _, child in self.runs[n])
        return out

    def values_in(self, node: int, box: Mapping[int, frozenset[int]]) -> set[Any]:
        """The terminal values reachable from ``node`` by inputs inside ``box`` (variable index ->
        allowed atoms; a variable not named is free)."""
        seen: dict[int, None] = {}
        out: set[Any] = set()
        stack = [node]
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen[n] = None
            if self.is_terminal(n):
                out.add(self.value[n])
                continue
            allowed = box.get(self.var[n])
            start = 0
            for end, child in self.runs[n]:
                if allowed is None or any(start <= a < end for a in allowed):
                    stack.append(child)
                start = end
        return out

    # --- paths -------------------------------------------------------------------------------
    def count_paths(self, node: int, wanted: Callable[[Any], bool]) -> int:
        """How many boxes :meth:`paths` yields (children grouped by identity, as it does)."""
        memo: dict[int, int] = {}

        def count(n: int) -> int:
            got = memo.get(n)
            if got is None:
                if self.is_terminal(n):
                    got = 1 if wanted(self.value[n]) else 0
                else:
                    got = sum(count(c) for c in {c for _, c in self.runs[n]})
                memo[n] = got
            return got

        return count(node)

    def paths(self, node: int, wanted: Callable[[Any], bool]) -> Iterator[tuple[Box, Any]]:
        """Disjoint boxes covering exactly the inputs whose value is ``wanted``: one per path,
        with the atoms of each variable that lead to the same child taken together."""
        dead: dict[int, bool] = {}

        def empty(n: int) -> bool:
            got = dead.get(n)
            if got is None:
                if self.is_terminal(n):
                    got = not wanted(self.value[n])
                else:
                    got = all(empty(c) for _, c in self.runs[n])
                dead[n] = got
            return got

        box: Box = {}

        def walk(n: int) -> Iterator[tuple[Box, Any]]:
            if empty(n):
                return
            if self.is_terminal(n):
                yield dict(box), self.value[n]
                return
            v = self.var[n]
            groups: dict[int, list[int]] = {}
            start = 0
            for end, child in self.runs[n]:
                groups.setdefault(child, []).extend(range(start, end))
                start = end
            for child, atoms in groups.items():
                if empty(child):
                    continue
                box[v] = tuple(atoms)
                yield from walk(child)
            box.pop(v, None)

        yield from walk(node)

    @property
    def size(self) -> int:
        return len(self.var)


def _and(a: Any, b: Any) -> bool:
    return bool(a) and bool(b)


def _or(a: Any, b: Any) -> bool:
    return bool(a) or bool(b)


def _not(a: Any, _: Any) -> bool:
    return not a


def _xor(a: Any, b: Any) -> bool:
    return bool(a) != bool(b)
