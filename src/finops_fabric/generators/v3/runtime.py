"""Runtime of an enforcer made by generator v3 (copied verbatim into A as runtime.py).

Generator v3 implements policy language 1.1 ("fail closed"): it decides exactly as generator v2
does and adds three input checks, each a fired entry under its own IRI (``INPUT_CHECK_*``): a
type that is missing or not a declared code (codes match exactly), an amount that is missing,
not a plain decimal (a string must be digits with an optional fraction and sign, without
spaces or exponent; a binary float or a boolean is refused) or negative, and an actor level
that is missing or not declared. The rules read the amount by the same strict reading.

Every rule module of A exports ``fragment``: straight-line code over the transaction's fields
(its parameters) and the module's own constants. At load time this runtime inlines those
bodies into ONE decide function per declared transaction type (plus one for an undeclared and
one for a missing type): the fields are read once, the input checks of that path are inlined,
approval rules are tried in threshold order under a single amount check, the outcome's
notification and audit rules follow with their event already known, and the constants are
bound directly, so a decision makes no per-rule call.

Deciding builds no text: a fired rule is recorded as its IRI with a reason *template* (a tuple
of constant strings) and the immutable values the reason shows; :class:`Decision` builds the
reasons, their order and the decision JSON only when they are asked for.

Before a fragment is inlined its syntax is checked against a short allow-list (assignments,
``if``, comparisons, boolean logic, ``+``, tuples, calls of ``append``/``extend``/``get``/
``join`` and of a few helpers) and every name it reads must be a parameter, a local it assigned,
a helper or a constant of its own module. The fused code is compiled from those checked syntax
trees (never from text) and uses only the standard library; deciding does no I/O.
"""

from __future__ import annotations

import ast
import builtins
import functools
import operator
import re
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

APPROVE = "APPROVE"
REJECT = "REJECT"
FAB = "https://w3id.org/finops-fabric/ns#"
INPUT_CHECK_TYPE = FAB + "FailClosed/type"
INPUT_CHECK_AMOUNT = FAB + "FailClosed/amount"
INPUT_CHECK_LEVEL = FAB + "FailClosed/actor_level"
_STRICT_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)").fullmatch
_FAILS = "; the transaction fails closed"

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
EMPTY: tuple[Any, ...] = ()
#: decide compares the type with this many declared codes in line before it looks one up.
INLINE_TYPES = 8


def to_decimal(value: object) -> Decimal | None:
    """An amount as language 1.1 reads it: an int, a finite Decimal, or a string that is a plain
    decimal exactly (no surrounding spaces, no exponent); else None. Binary floats and booleans
    are refused: money is never a float."""
    if isinstance(value, str):
        return Decimal(value) if _STRICT_DECIMAL(value) else None
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


def to_attrs(value: object) -> Mapping[str, Any]:
    """The transaction's ``attributes`` when it is not a dict: a mapping as it is, else none."""
    return value if isinstance(value, Mapping) else {}


# --- reasons ------------------------------------------------------------------------------------


def reason(entry: tuple[Any, ...]) -> str:
    """The text of one fired entry: ``(rule, text)``; ``(rule, template, *values)``, where the
    template is a tuple of one more constant string than there are values and the values go
    between them; or ``(rule, function, *values)`` for the runtime's own input checks."""
    why = entry[1]
    if type(why) is str:
        return why
    if type(why) is tuple:
        n = len(why)
        if n == 2:
            return why[0] + str(entry[2]) + why[1]  # type: ignore[no-any-return]
        if n == 3:
            return why[0] + str(entry[2]) + why[1] + str(entry[3]) + why[2]  # type: ignore[no-any-return]
        out: str = why[0]
        for i in range(1, n):
            out += str(entry[i + 1]) + why[i]
        return out
    return str(why(*entry[2:]))


def shown(value: object) -> str:
    """A transaction's value as a reason shows it: text quoted with every non-ASCII character
    escaped (so a look-alike letter or a trailing space is visible), long values cut short."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float | Decimal):
        text = ascii(value) if isinstance(value, str | float) else str(value)
        return text if len(text) <= 80 else text[:72] + "...(" + str(len(text)) + " characters)"
    return "an object" if isinstance(value, Mapping) else "a value of type " + type(value).__name__


class InputChecks:
    """The reasons of language 1.1's fail-closed checks, naming the field, its value and what the
    policy declares. A decision records the check with one of these functions and the value it
    read (immutable, or shown by its type alone); the text is built when it is asked for."""

    def __init__(self, types_: Iterable[str], ranks: Mapping[str, int]) -> None:
        self.declared_types = ", ".join(sorted(types_)) or "none"
        self.declared_levels = ", ".join(sorted(ranks, key=lambda c: (ranks[c], c))) or "none"

    def bad_type(self, value: object) -> str:
        if value is None:
            return "field 'type' is missing (declared: " + self.declared_types + ")" + _FAILS
        return (
            "field 'type' is "
            + shown(value)
            + ", which is not a declared transaction type (declared: "
            + self.declared_types
            + ")"
            + _FAILS
        )

    def bad_amount(self, value: object) -> str:
        if value is None:
            return "field 'amount' is missing" + _FAILS
        if isinstance(value, float):
            why = ": amount is a binary float; send a decimal string"
        elif isinstance(value, Decimal) and not value.is_finite():
            why = ", which is not a finite decimal"
        elif isinstance(value, str):
            why = ", which is not a plain decimal (no spaces, no exponent, e.g. '105000.00')"
        else:
            why = ", which is not a decimal amount"
        return "field 'amount' is " + shown(value) + why + _FAILS

    def negative(self, amount: Decimal) -> str:
        return "field 'amount' is negative (" + str(amount) + ")" + _FAILS

    def bad_level(self, value: object) -> str:
        if value is None:
            return "field 'actor_level' is missing (declared: " + self.declared_levels + ")" + _FAILS
        return (
            "field 'actor_level' is "
            + shown(value)
            + ", which is not a declared authority level (declared: "
            + self.declared_levels
            + ")"
            + _FAILS
        )


_rule_of = operator.itemgetter(0)


class Decision:
    """One decision: ``decision`` ("APPROVE" or "REJECT"), ``transaction_id``, ``enforcer_hash``;
    the fired rules with their reasons (sorted as the decision JSON lists them), the notifications,
    the audit entries and :meth:`to_dict` are built from what the decision recorded, when asked.

    Each loaded enforcer makes its own subclasses (one per outcome of each decide path), whose
    class attributes hold the enforcer's hash, the outcome and whatever that path records as a
    constant, so making a decision stores only what differs per transaction."""

    __slots__ = ("_audit", "_fired", "_notes", "transaction_id")
    enforcer_hash: str = ""
    decision: str

    transaction_id: object
    _fired: Sequence[tuple[Any, ...]]
    _notes: Sequence[tuple[str, str]]
    _audit: Sequence[tuple[str, str, tuple[str, ...]]]

    @property
    def rules(self) -> list[str]:
        """The IRIs of the rules (and input checks) that fired, sorted."""
        out = [entry[0] for entry in self._fired]
        out.sort()
        return out

    @property
    def fired(self) -> list[tuple[str, str]]:
        """(rule IRI, reason) of every rule that fired, sorted."""
        entries = self._fired
        if not entries:
            return []
        if len(entries) == 1:
            entry = entries[0]
            return [(entry[0], reason(entry))]
        out = [(entry[0], reason(entry)) for entry in entries]
        out.sort()
        return out

    @property
    def notifications(self) -> list[tuple[str, str]]:
        return list(self._notes)

    @property
    def audit(self) -> list[tuple[str, str, tuple[str, ...]]]:
        return list(self._audit)

    def to_dict(self) -> dict[str, Any]:
        """The decision JSON of the policy language."""
        entries, notes, audit = self._fired, self._notes, self._audit
        if len(entries) > 1:  # a rule fires at most once: sorting by rule is sorting by (rule, reason)
            entries = sorted(entries, key=_rule_of)
        return {
            "transaction_id": self.transaction_id,
            "decision": self.decision,
            "fired": [{"rule": e[0], "reason": reason(e)} for e in entries] if entries else [],
            "notifications": [{"rule": r, "recipient": to} for r, to in notes] if notes else [],
            "audit": [{"rule": r, "ledger": led, "flags": list(flags)} for r, led, flags in audit]
            if audit
            else [],
            "enforcer_hash": self.enforcer_hash,
        }

    def __repr__(self) -> str:
        return f"<Decision {self.decision} {self.transaction_id!r} fired={self.rules}>"


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


# How each field a fragment reads is computed, once per decision (``get`` is ``raw.get``). The
# amount and the level are read on every path: the input checks need them.
_READ = {
    "tx_type": "tx_type = get('type')\nif not isinstance(tx_type, str):\n    tx_type = None\n",
    "amount": (
        "amount = get('amount')\n"
        "if type(amount) is Decimal:\n"
        "    if not amount.is_finite():\n"
        "        amount = None\n"
        "elif type(amount) is str:\n"
        "    whole, dot, frac = amount.partition('.')\n"
        "    if whole.isdigit() and whole.isascii() and (not dot or (frac.isdigit() and frac.isascii())):\n"
        "        amount = Decimal(amount)\n"
        "    else:\n"
        "        amount = to_decimal(amount)\n"
        "else:\n"
        "    amount = to_decimal(amount)\n"
    ),
    "level": (
        "level = get('actor_level')\n"
        "if type(level) is str:\n"
        "    rank = ranks_get(level)\n"
        "elif isinstance(level, str):\n"
        "    rank = ranks_get(level)\n"
        "else:\n"
        "    level = rank = None\n"
    ),
    "attrs": "attrs = get('attributes')\nif type(attrs) is not dict:\n    attrs = to_attrs(attrs)\n",
    "approver": "approver = to_text(get('approver_id'))\n",
    "executor": "executor = to_text(get('executor_id'))\n",
}
# The input checks of amount and level (the type's is decided by the path itself).
_CHECK_AMOUNT = (
    "if amount is None:\n"
    "    fired.append((INPUT_CHECK_AMOUNT, bad_amount, get('amount')))\n"
    "elif amount < ZERO:\n"
    "    fired.append((INPUT_CHECK_AMOUNT, negative, amount))\n"
)
_CHECK_LEVEL = "if rank is None:\n    fired.append((INPUT_CHECK_LEVEL, bad_level, get('actor_level')))\n"


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


def _constant_effect(frag: Fragment) -> tuple[Any, ...] | None:
    """What a notification or audit fragment adds whenever its event occurs, if it always adds
    the same (its body is one ``notes.extend(NAME)`` or ``audit.append(NAME)``); else None."""
    body = [s for s in frag.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    if len(body) != 1 or not isinstance(body[0], ast.Expr) or not isinstance(body[0].value, ast.Call):
        return None
    call = body[0].value
    func = call.func
    if (
        not isinstance(func, ast.Attribute)
        or not isinstance(func.value, ast.Name)
        or (func.value.id, func.attr) not in (("notes", "extend"), ("audit", "append"))
        or len(call.args) != 1
        or call.keywords
        or not isinstance(call.args[0], ast.Name)
        or not call.args[0].id.startswith(frag.prefix)
    ):
        return None
    value = getattr(frag.module, call.args[0].id.removeprefix(frag.prefix))
    return tuple(value) if func.attr == "extend" else (value,)


class Enforcer:
    """Decides transactions with the rule modules of one A, fused per transaction type."""

    def __init__(
        self,
        ranks: dict[str, int],
        types_: Iterable[str],
        modules: Iterable[tuple[types.ModuleType, ast.Module]],
        enforcer_hash: str,
        input_error: Callable[[str], Exception] = TypeError,
    ) -> None:
        self.ranks = dict(ranks)
        self.types = tuple(types_)
        self.enforcer_hash = enforcer_hash
        self.input_error = input_error
        pairs = sorted(modules, key=lambda p: str(p[0].RULE))
        self.modules = tuple(mod for mod, _ in pairs)
        checks = InputChecks(self.types, self.ranks)
        self.decision_class = type("Decision", (Decision,), {"__slots__": (), "enforcer_hash": enforcer_hash})
        ns: dict[str, Any] = {
            "__builtins__": builtins,
            "Decimal": Decimal,
            "ZERO": Decimal(0),
            "INPUT_CHECK_TYPE": INPUT_CHECK_TYPE,
            "INPUT_CHECK_AMOUNT": INPUT_CHECK_AMOUNT,
            "INPUT_CHECK_LEVEL": INPUT_CHECK_LEVEL,
            "to_decimal": to_decimal,
            "to_text": to_text,
            "to_attrs": to_attrs,
            "ranks_get": self.ranks.get,
            "bad_type": checks.bad_type,
            "bad_amount": checks.bad_amount,
            "negative": checks.negative,
            "bad_level": checks.bad_level,
            "not_a_mapping": self._not_a_mapping,
            "reason": reason,
        }
        self._ns = ns
        frags = [Fragment(i, mod, tree, ns) for i, (mod, tree) in enumerate(pairs)]
        self._fragments = frags
        declared = sorted(set(self.types) | {t for f in frags for t in f.applies_to})
        bodies = {t: self._plan(f"_plan_{i}", frags, t, "declared") for i, t in enumerate(declared)}
        plans = {t: _compile(f"_plan_{i}", "get, tx_type", b, ns) for i, (t, b) in enumerate(bodies.items())}
        ns["plans_get"] = plans.get
        ns["plan_unknown"] = _compile(
            "_plan_unknown", "get, tx_type", self._plan("_plan_unknown", frags, None, "undeclared"), ns
        )
        ns["plan_untyped"] = _compile(
            "_plan_untyped", "get, tx_type", self._plan("_plan_untyped", frags, None, "missing"), ns
        )
        # decide itself: the paths of the first INLINE_TYPES declared types inline (a string
        # comparison each, cheaper than a call), the others through a lookup and a call.
        chain: list[ast.stmt] = _stmts("return plans_get(tx_type, plan_unknown)(get, tx_type)\n")
        for i, t in reversed(list(enumerate(declared[:INLINE_TYPES]))):
            ns[f"_type_{i}"] = t
            chain = [_if(f"tx_type == _type_{i}", bodies[t], chain)]
        body = _stmts(
            "try:\n    get = raw.get\nexcept AttributeError:\n    not_a_mapping(raw)\ntx_type = get('type')\n"
        )
        body.append(_if("type(tx_type) is str", chain))
        body += _stmts(
            "if isinstance(tx_type, str):\n"
            "    return plans_get(tx_type, plan_unknown)(get, tx_type)\n"
            "return plan_untyped(get, tx_type)\n"
        )
        self.decide = _compile("decide", "raw", body, ns)
        for frag in frags:
            # A rule's own check/matches serve the per-rule golden checks only: compiled on first use.
            if frag.kind == "decision":
                setattr(frag.module, "check", _lazy(functools.partial(self._check, frag)))  # noqa: B010
            else:
                setattr(frag.module, "matches", _lazy(functools.partial(self._matches, frag)))  # noqa: B010

    def _not_a_mapping(self, raw: object) -> None:
        raise self.input_error(
            "a transaction must be a mapping of field names to values (a JSON object); "
            f"got {type(raw).__name__}"
        )

    def transaction(self, raw: Any) -> Any:
        """What a rule's own ``check``/``matches`` takes: the transaction as given."""
        return raw

    def _plan(self, name: str, frags: list[Fragment], tx_type: str | None, kind: str) -> list[ast.stmt]:
        """The decide path (a function body over ``get`` and ``tx_type``) for a declared type,
        an undeclared one, or a missing one."""
        ns = self._ns
        mine = [f for f in frags if (f.applies(tx_type) if kind != "missing" else not f.applies_to)]
        decisions = [f for f in mine if f.kind == "decision"]
        approvals = sorted(
            (f for f in decisions if f.rule_class == "approval"),
            key=lambda f: (f.module.THRESHOLD, f.rule),
        )
        for f in approvals:
            f.bind(ns, "THRESHOLD")
        body: list[ast.stmt] = []
        needs = {n for f in mine for n in f.needs} | {"amount", "level"}
        body += _reads(needs, typed=True)
        body += _stmts("fired = []\n")
        if kind == "undeclared":  # the path's own type check
            body += _stmts("fired.append((INPUT_CHECK_TYPE, bad_type, tx_type))\n")
        elif kind == "missing":  # not a string (or absent): missing, to the rules as well
            body += _stmts("fired.append((INPUT_CHECK_TYPE, bad_type, tx_type))\ntx_type = None\n")
        body += _stmts(_CHECK_AMOUNT) + _stmts(_CHECK_LEVEL)
        for frag in decisions:
            if frag.rule_class != "approval":
                body += frag.inline()
        missing_amount = f"{name}_missing_amount"
        ns[missing_amount] = tuple(f.module.MISSING_AMOUNT for f in approvals)
        body += _approval_block(approvals, missing_amount)
        if kind == "missing":
            missing_type = f"{name}_missing_type"
            typed_rules = sorted(f.rule for f in frags if f.kind == "decision" and f.applies_to)
            ns[missing_type] = tuple((r, _missing_type(r)) for r in typed_rules)
            if typed_rules:
                body += _stmts(f"fired.extend({missing_type})\n")
        effects = [f for f in mine if f.kind != "decision"]

        def outcome(value: str) -> list[ast.stmt]:
            """Make the decision: a class of its own for this path and outcome holds what is
            constant (the outcome, no fired rules on approval, effects that always act)."""
            acting = [f for f in effects if value in f.module.EVENTS]
            fixed: dict[str, Any] = {"decision": value}
            if value == APPROVE:
                fixed["_fired"] = EMPTY
            out: list[ast.stmt] = []
            stored = ["transaction_id = get('id')", *(["_fired = fired"] if value == REJECT else [])]
            for sink in ("notes", "audit"):
                frags = [f for f in acting if sink in f.params]
                constant = [_constant_effect(f) for f in frags]
                if all(c is not None for c in constant):
                    fixed["_" + sink] = tuple(x for c in constant for x in c or ())
                else:
                    out += _stmts(f"{sink} = []\n")
                    for frag in frags:
                        out += frag.inline()
                    stored.append(f"_{sink} = {sink}")
            cls = f"{name}_{value.lower()}"
            ns[cls] = type("Decision", (self.decision_class,), {"__slots__": (), **fixed})
            out += _stmts(f"decision = {cls}()\n" + "".join(f"decision.{s}\n" for s in stored))
            out += _stmts("return decision\n")
            return out

        body.append(_if("fired", outcome(REJECT)))
        body += outcome(APPROVE)
        return body

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
        body += _stmts("return (fired[0][0], reason(fired[0])) if fired else None\n")
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
