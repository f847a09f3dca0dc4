"""Runtime of an enforcer made by generator v2 (copied verbatim into A as runtime.py).

Every rule module of A exports ``fragment``: straight-line code over the transaction's fields
(its parameters) and the module's own constants. At load time this runtime inlines those
bodies into ONE decide function per transaction type (plus one for an unknown and one for a
missing type): the fields are read once, approval rules are tried in threshold order under a
single amount check, the outcome's notification and audit rules follow with their event
already known, and the constants are bound directly, so a decision makes no per-rule call.
The same inlined bodies make each rule's own ``check``/``matches`` for per-rule checks.

Before a fragment is inlined its syntax is checked against a short allow-list (assignments,
``if``, comparisons, boolean logic, ``+``, calls of ``append``/``extend``/``get``/``join``
and of four helpers) and every name it reads must be a parameter, a local it assigned, a
helper or a constant of its own module. The fused code is compiled from those checked syntax
trees (never from text) and uses only the standard library; deciding does no I/O.
"""

from __future__ import annotations

import ast
import builtins
import functools
import re
import types
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any

APPROVE = "APPROVE"
REJECT = "REJECT"
_PLAIN_DECIMAL = re.compile(r"\s*[+-]?(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)\s*").fullmatch

FIELDS = ("tx_type", "amount", "level", "rank", "attrs", "approver", "executor")
SINKS = ("fired", "notes", "audit")
HELPERS = frozenset({"to_decimal", "to_text", "str", "type"})
_LOCAL = re.compile(r"v[0-9]+|missing").fullmatch
_METHODS = frozenset({"append", "extend", "get", "join"})
_ALLOWED = (
    ast.Expr, ast.If, ast.Assign, ast.Pass, ast.Call, ast.Attribute, ast.Name, ast.Load, ast.Store,
    ast.Constant, ast.Tuple, ast.List, ast.BoolOp, ast.And, ast.Or, ast.Compare, ast.Is, ast.IsNot, ast.Eq,
    ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn, ast.BinOp, ast.Add, ast.UnaryOp,
    ast.Not, ast.IfExp,
)  # fmt: skip
_FILENAME = "<enforcer>/runtime.py:fused"


def to_decimal(value: object) -> Decimal | None:
    """A decimal from an int, a Decimal or a string in plain decimal notation; else None.

    Binary floats and booleans are refused: money is never a float.
    """
    if type(value) is str:
        whole, dot, frac = value.partition(".")
        if whole.isdigit() and whole.isascii() and (not dot or (frac.isdigit() and frac.isascii())):
            return Decimal(value)  # the common case, without the regular expression
        return Decimal(value) if _PLAIN_DECIMAL(value) else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    return None


def to_text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return str(value) if value.is_finite() else None
    return None


class Decision:
    __slots__ = ("audit", "decision", "enforcer_hash", "fired", "notifications", "transaction_id")

    def __init__(
        self,
        transaction_id: object,
        decision: str,
        fired: list[tuple[str, str]],
        notifications: list[tuple[str, str]],
        audit: list[tuple[str, str, tuple[str, ...]]],
        enforcer_hash: str,
    ) -> None:
        self.transaction_id = transaction_id
        self.decision = decision
        self.fired = fired
        self.notifications = notifications
        self.audit = audit
        self.enforcer_hash = enforcer_hash

    def to_dict(self) -> dict[str, Any]:
        return {
            "transaction_id": self.transaction_id,
            "decision": self.decision,
            "fired": [{"rule": r, "reason": why} for r, why in self.fired],
            "notifications": [{"rule": r, "recipient": to} for r, to in self.notifications],
            "audit": [{"rule": r, "ledger": led, "flags": list(flags)} for r, led, flags in self.audit],
            "enforcer_hash": self.enforcer_hash,
        }


def _missing_type(rule: str) -> str:
    return "field 'type' is missing; rule " + rule + " applies to specific types, so it fails closed"


_PARSED: dict[str, list[ast.stmt]] = {}


def _stmts(source: str) -> list[ast.stmt]:
    """The statements of a fixed piece of the runtime's own code, parsed once. compile() only
    reads a syntax tree, so the same nodes can be shared by every fused path."""
    stmts = _PARSED.get(source)
    if stmts is None:
        stmts = _PARSED[source] = ast.parse(source).body
    return list(stmts)


def _expr(source: str) -> ast.expr:
    (stmt,) = _stmts(source)
    assert isinstance(stmt, ast.Expr)
    return stmt.value


# How each field a fragment reads is computed, once per decision (``get`` is ``raw.get``).
_READ = {
    "tx_type": "tx_type = get('type')\nif type(tx_type) is not str:\n    tx_type = None\n",
    "amount": (
        "amount = get('amount')\n"
        "if type(amount) is str:\n"
        "    whole, dot, frac = amount.partition('.')\n"
        "    if whole.isdigit() and whole.isascii() and (not dot or (frac.isdigit() and frac.isascii())):\n"
        "        amount = Decimal(amount)\n"
        "    else:\n"
        "        amount = to_decimal(amount)\n"
        "else:\n"
        "    amount = to_decimal(amount)\n"
    ),
    "level": "level = get('actor_level')\nif type(level) is str:\n    rank = ranks_get(level)\n"
    "else:\n    level = rank = None\n",
    "attrs": "attrs = get('attributes')\nif type(attrs) is not dict:\n    attrs = {}\n",
    "approver": "approver = to_text(get('approver_id'))\n",
    "executor": "executor = to_text(get('executor_id'))\n",
}


def _reads(needs: Iterable[str], typed: bool) -> list[ast.stmt]:
    """Statements that compute the needed fields (``tx_type`` is a parameter when ``typed``)."""
    wanted = set(needs)
    if "rank" in wanted:
        wanted.add("level")
    out: list[ast.stmt] = []
    for name in ("tx_type", "amount", "level", "attrs", "approver", "executor"):
        if name in wanted and not (name == "tx_type" and typed):
            out += _stmts(_READ[name])
    return out


class Fragment:
    """One rule module's ``fragment``: checked, its constants renamed apart (in the module's own
    syntax tree, which the runtime takes over), ready to inline."""

    def __init__(self, index: int, module: types.ModuleType, tree: ast.Module, ns: dict[str, Any]) -> None:
        self.module = module
        self.rule: str = module.RULE
        self.kind: str = module.KIND
        self.rule_class: str = module.RULE_CLASS
        self.applies_to: tuple[str, ...] = tuple(module.APPLIES_TO)
        self.prefix = f"_r{index}_"
        found = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "fragment"]
        if len(found) != 1:
            raise ValueError(f"rule module {self.rule!r} does not define exactly one `fragment`")
        fn = found[0]
        args = fn.args
        if fn.decorator_list or args.vararg or args.kwarg or args.kwonlyargs or args.defaults:
            raise ValueError(f"the fragment of {self.rule!r} has an unexpected signature")
        self.params = tuple(a.arg for a in args.args)
        if not set(self.params) <= set(FIELDS) | set(SINKS):
            raise ValueError(f"the fragment of {self.rule!r} reads unknown fields {self.params}")
        self.needs = tuple(p for p in self.params if p in FIELDS)
        self.body = self._rename(fn.body, ns)

    def _rename(self, body: list[ast.stmt], ns: dict[str, Any]) -> list[ast.stmt]:
        stored: set[str] = set()
        loads: list[ast.Name] = []
        for stmt in body:
            for node in ast.walk(stmt):
                if not isinstance(node, _ALLOWED):
                    raise ValueError(f"the fragment of {self.rule!r} uses {type(node).__name__}")
                if isinstance(node, ast.Name):
                    if isinstance(node.ctx, ast.Load):
                        loads.append(node)
                    elif not _LOCAL(node.id):
                        raise ValueError(f"the fragment of {self.rule!r} assigns {node.id!r}")
                    else:
                        stored.add(node.id)
                elif isinstance(node, ast.Attribute) and node.attr not in _METHODS:
                    raise ValueError(f"the fragment of {self.rule!r} reads attribute {node.attr!r}")
                elif isinstance(node, ast.Call) and not isinstance(node.func, ast.Attribute | ast.Name):
                    raise ValueError(f"the fragment of {self.rule!r} calls an expression")
        scope = vars(self.module)
        for node in loads:
            name = node.id
            if name in self.params or name in stored or name in HELPERS:
                continue
            if name.startswith("_") or name not in scope:
                raise ValueError(f"the fragment of {self.rule!r} reads an unknown name {name!r}")
            node.id = self.prefix + name
            ns[node.id] = scope[name]
        return body

    def bind(self, ns: dict[str, Any], name: str) -> str:
        """Bind one of the module's constants for the runtime's own code; return its fused name."""
        fused = self.prefix + name
        ns[fused] = getattr(self.module, name)
        return fused

    def inline(self) -> list[ast.stmt]:
        # compile() only reads a syntax tree, so every fused path can share the same nodes.
        return list(self.body)

    def applies(self, tx_type: str | None) -> bool:
        return not self.applies_to or (tx_type is not None and tx_type in self.applies_to)


def _if(test: str, body: list[ast.stmt], orelse: Sequence[ast.stmt] = ()) -> ast.If:
    return ast.If(test=_expr(test), body=body or _stmts("pass"), orelse=list(orelse), lineno=1, col_offset=0)


def _compile(name: str, params: str, body: list[ast.stmt], ns: dict[str, Any]) -> Callable[..., Any]:
    fdef = ast.parse(f"def {name}({params}):\n    pass\n").body[0]
    assert isinstance(fdef, ast.FunctionDef)
    fdef.body = body
    code = compile(ast.Module(body=[fdef], type_ignores=[]), _FILENAME, "exec", dont_inherit=True)
    (fcode,) = [c for c in code.co_consts if isinstance(c, types.CodeType)]
    return types.FunctionType(fcode, ns, name)


def _lazy(build: Callable[[], Callable[..., Any]]) -> Callable[..., Any]:
    """A function that is built the first time it is called."""
    built: list[Callable[..., Any]] = []

    def call(*args: Any) -> Any:
        if not built:
            built.append(build())
        return built[0](*args)

    return call


def _approval_block(approvals: list[Fragment], missing_name: str) -> list[ast.stmt]:
    """Approval rules under one amount check: a missing amount fires each rule's MISSING_AMOUNT;
    below the smallest threshold none is tried; each further one is tried past its threshold."""
    if not approvals:
        return []
    first, *rest = approvals
    inner = first.inline()
    for frag in rest:
        inner.append(_if(f"amount > {frag.prefix}THRESHOLD", frag.inline()))
    return [
        _if(
            "amount is None",
            _stmts(f"fired.extend({missing_name})\n"),
            [_if(f"amount > {first.prefix}THRESHOLD", inner)],
        )
    ]


class Enforcer:
    """Decides transactions with the rule modules of one A, fused per transaction type."""

    def __init__(
        self,
        ranks: dict[str, int],
        modules: Iterable[tuple[types.ModuleType, ast.Module]],
        enforcer_hash: str,
    ) -> None:
        self.ranks = dict(ranks)
        self.enforcer_hash = enforcer_hash
        pairs = sorted(modules, key=lambda p: str(p[0].RULE))
        self.modules = tuple(mod for mod, _ in pairs)
        ns: dict[str, Any] = {
            "__builtins__": builtins,
            "Decimal": Decimal,
            "Decision": Decision,
            "to_decimal": to_decimal,
            "to_text": to_text,
            "ranks_get": self.ranks.get,
            "ENFORCER_HASH": enforcer_hash,
        }
        self._ns = ns
        frags = [Fragment(i, mod, tree, ns) for i, (mod, tree) in enumerate(pairs)]
        self._fragments = frags
        types_ = sorted({t for f in frags for t in f.applies_to})
        plans = {t: self._plan(f"_plan_{i}", frags, t, typed=True) for i, t in enumerate(types_)}
        unknown = self._plan("_plan_unknown", frags, None, typed=True)
        untyped = self._plan("_plan_untyped", frags, None, typed=False)
        ns["plans_get"] = plans.get
        ns["plan_unknown"] = unknown
        ns["plan_untyped"] = untyped
        self.decide = _compile(
            "decide",
            "raw",
            _stmts(
                "tx_type = raw.get('type')\n"
                "if type(tx_type) is str:\n"
                "    return plans_get(tx_type, plan_unknown)(raw, tx_type)\n"
                "return plan_untyped(raw, None)\n"
            ),
            ns,
        )
        for frag in frags:
            # A rule's own check/matches serve the per-rule golden checks only: compiled on first use.
            if frag.kind == "decision":
                setattr(frag.module, "check", _lazy(functools.partial(self._check, frag)))  # noqa: B010
            else:
                setattr(frag.module, "matches", _lazy(functools.partial(self._matches, frag)))  # noqa: B010

    def transaction(self, raw: Any) -> Any:
        """What a rule's own ``check``/``matches`` takes: the transaction as given."""
        return raw

    def _plan(self, name: str, frags: list[Fragment], tx_type: str | None, typed: bool) -> Callable[..., Any]:
        """The decide function for one type (``typed``), an unknown type, or a missing one."""
        ns = self._ns
        mine = [f for f in frags if (f.applies(tx_type) if typed else not f.applies_to)]
        decisions = [f for f in mine if f.kind == "decision"]
        approvals = sorted(
            (f for f in decisions if f.rule_class == "approval"),
            key=lambda f: (f.module.THRESHOLD, f.rule),
        )
        for f in approvals:
            f.bind(ns, "THRESHOLD")
        body: list[ast.stmt] = [*_stmts("get = raw.get\n")]
        needs = {n for f in mine for n in f.needs} | ({"amount"} if approvals else set())
        body += _reads(needs, typed=True)
        body += _stmts("fired = []\n")
        for frag in decisions:
            if frag.rule_class != "approval":
                body += frag.inline()
        missing_amount = f"{name}_missing_amount"
        ns[missing_amount] = tuple(f.module.MISSING_AMOUNT for f in approvals)
        body += _approval_block(approvals, missing_amount)
        if not typed:
            missing_type = f"{name}_missing_type"
            typed_rules = sorted(f.rule for f in frags if f.kind == "decision" and f.applies_to)
            ns[missing_type] = tuple((r, _missing_type(r)) for r in typed_rules)
            if typed_rules:
                body += _stmts(f"fired.extend({missing_type})\n")
        effects = [f for f in mine if f.kind != "decision"]

        def outcome(value: str) -> list[ast.stmt]:
            out = _stmts("notes = []\naudit = []\n")
            for frag in effects:
                if value in frag.module.EVENTS:
                    out += frag.inline()
            out += _stmts(f"return Decision(get('id'), {value!r}, fired, notes, audit, ENFORCER_HASH)\n")
            return out

        body.append(_if("fired", [_if("len(fired) > 1", _stmts("fired.sort()\n")), *outcome(REJECT)]))
        body += outcome(APPROVE)
        return _compile(name, "raw, tx_type", body, ns)

    def _check(self, frag: Fragment) -> Callable[..., Any]:
        """The rule on its own: its (rule, reason) when it fires, else None."""
        body: list[ast.stmt] = [*_stmts("get = raw.get\n")]
        body += _reads(frag.needs, typed=False)
        body += _stmts("fired = []\n")
        if frag.rule_class == "approval":
            missing, threshold = frag.bind(self._ns, "MISSING_AMOUNT"), frag.bind(self._ns, "THRESHOLD")
            body.append(
                _if(
                    "amount is None",
                    _stmts(f"fired.append({missing})\n"),
                    [_if(f"amount > {threshold}", frag.inline())],
                )
            )
        else:
            body += frag.inline()
        body += _stmts("return fired[0] if fired else None\n")
        return _compile(f"{frag.prefix}check", "raw", body, self._ns)

    def _matches(self, frag: Fragment) -> Callable[..., Any]:
        """Whether a notification or audit rule acts on this transaction and outcome."""
        events = frag.bind(self._ns, "EVENTS")
        body: list[ast.stmt] = _stmts(f"if outcome not in {events}:\n    return False\n")
        body += _stmts("get = raw.get\n")
        body += _reads(frag.needs, typed=False)
        body += _stmts("notes = []\naudit = []\n")
        body += frag.inline()
        body += _stmts("return bool(notes or audit)\n")
        return _compile(f"{frag.prefix}matches", "raw, outcome", body, self._ns)
