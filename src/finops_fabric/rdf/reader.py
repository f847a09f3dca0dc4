"""Read O (RDF triples) once into the typed model of ``finops_fabric.model``.

The ontology gate (SHACL) runs first and explains problems to the compliance officer; this
reader still checks what it relies on and raises a ``CheckFailed`` naming the node if O is not
what the model needs, so it can never build a half-understood policy.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, cast

import pyoxigraph as ox

from finops_fabric import model as m
from finops_fabric.errors import CheckFailed, Location
from finops_fabric.rdf.literals import number_of
from finops_fabric.rdf.load import Statement

FAB = m.FAB
RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
RDFS_LABEL = "http://www.w3.org/2000/01/rdf-schema#label"
DCT_TITLE = "http://purl.org/dc/terms/title"
XSD = "http://www.w3.org/2001/XMLSchema#"
NUMERIC = {
    XSD + n
    for n in (
        "decimal",
        "integer",
        "int",
        "long",
        "short",
        "nonNegativeInteger",
        "positiveInteger",
        "double",
        "float",
    )
}
EVENTS = {FAB + "Approved": "Approved", FAB + "Rejected": "Rejected", FAB + "AnyDecision": "AnyDecision"}
OPERATORS = {FAB + op: op for op in ("gt", "ge", "lt", "le", "eq", "ne")}

Term = ox.NamedNode | ox.BlankNode | ox.Literal


class _Index:
    def __init__(self, triples: Sequence[Statement]) -> None:
        self.po: dict[object, dict[str, list[Term]]] = defaultdict(lambda: defaultdict(list))
        self.by_type: dict[str, list[ox.NamedNode | ox.BlankNode]] = defaultdict(list)
        for t in triples:
            self.po[t.subject][t.predicate.value].append(cast(Term, t.object))
            if t.predicate.value == RDF_TYPE and isinstance(t.object, ox.NamedNode):
                self.by_type[t.object.value].append(cast(ox.NamedNode | ox.BlankNode, t.subject))

    def objects(self, s: object, p: str) -> list[Term]:
        return self.po.get(s, {}).get(p, [])

    def types(self, s: object) -> set[str]:
        return {o.value for o in self.objects(s, RDF_TYPE) if isinstance(o, ox.NamedNode)}


def _node_name(n: object) -> str:
    if isinstance(n, ox.NamedNode):
        return n.value
    if isinstance(n, ox.BlankNode):
        return f"_:{n.value}"
    return str(n)


def _fail(node: object, msg: str) -> CheckFailed:
    return CheckFailed(msg, code="ontology.model", location=Location(node=_node_name(node)))


class _Reader:
    def __init__(self, triples: Sequence[Statement]) -> None:
        self.ix = _Index(triples)
        self.types: dict[str, m.TransactionType] = {}
        self.levels: dict[str, m.AuthorityLevel] = {}

    # --- scalar helpers ------------------------------------------------------------------
    def one(self, s: object, p: str, what: str) -> Term:
        vals = self.ix.objects(s, p)
        if len(vals) != 1:
            raise _fail(s, f"{_node_name(s)} must have exactly one {what} (has {len(vals)})")
        return vals[0]

    def opt(self, s: object, p: str, what: str) -> Term | None:
        vals = self.ix.objects(s, p)
        if len(vals) > 1:
            raise _fail(s, f"{_node_name(s)} must have at most one {what} (has {len(vals)})")
        return vals[0] if vals else None

    def string(self, s: object, p: str, what: str) -> str:
        v = self.one(s, p, what)
        if not isinstance(v, ox.Literal):
            raise _fail(s, f"{what} of {_node_name(s)} must be a literal")
        return v.value

    def opt_string(self, s: object, p: str, what: str) -> str | None:
        v = self.opt(s, p, what)
        if v is None:
            return None
        if not isinstance(v, ox.Literal):
            raise _fail(s, f"{what} of {_node_name(s)} must be a literal")
        return v.value

    def decimal(self, s: object, v: Term, what: str) -> tuple[Decimal, str]:
        if not isinstance(v, ox.Literal) or v.datatype.value not in NUMERIC:
            raise _fail(s, f"{what} of {_node_name(s)} must be a decimal number, not {v}")
        try:
            d = number_of(v.value, v.datatype.value)
        except ValueError as e:
            raise _fail(s, f"{what} of {_node_name(s)} is not a decimal number: {e}") from e
        return d, str(d)

    def iri(self, s: object, v: Term, what: str) -> str:
        if not isinstance(v, ox.NamedNode):
            raise _fail(s, f"{what} of {_node_name(s)} must be an IRI")
        return v.value

    def level(self, s: object, v: Term | None, what: str) -> m.AuthorityLevel | None:
        if v is None:
            return None
        iri = self.iri(s, v, what)
        if iri not in self.levels:
            raise _fail(
                s,
                f"{what} of {_node_name(s)} is {iri}, which is not an authority level; valid: "
                + ", ".join(lv.code for lv in sorted(self.levels.values(), key=lambda x: x.rank)),
            )
        return self.levels[iri]

    def type_code(self, s: object, v: Term, what: str) -> str:
        iri = self.iri(s, v, what)
        if iri not in self.types:
            raise _fail(s, f"{what} of {_node_name(s)} is {iri}, which is not a transaction type")
        return self.types[iri].code

    def value(self, s: object, v: Term) -> m.Value:
        if not isinstance(v, ox.Literal):
            raise _fail(s, f"fab:value of {_node_name(s)} must be a literal")
        if v.datatype.value in NUMERIC:
            return self.decimal(s, v, "fab:value")[0]
        return v.value

    # --- reference data ------------------------------------------------------------------
    def read_reference(self) -> None:
        for s in self.ix.by_type[FAB + "TransactionType"]:
            if not isinstance(s, ox.NamedNode):
                raise _fail(s, "a transaction type must be an IRI, not a blank node")
            self.types[s.value] = m.TransactionType(
                s.value, self.string(s, FAB + "code", "fab:code"), self.string(s, RDFS_LABEL, "rdfs:label")
            )
        for s in self.ix.by_type[FAB + "AuthorityLevel"]:
            if not isinstance(s, ox.NamedNode):
                raise _fail(s, "an authority level must be an IRI, not a blank node")
            rank_t = self.one(s, FAB + "rank", "fab:rank")
            rank, _ = self.decimal(s, rank_t, "fab:rank")
            if rank != rank.to_integral_value():
                raise _fail(s, f"fab:rank of {s.value} must be an integer")
            self.levels[s.value] = m.AuthorityLevel(
                s.value, self.string(s, FAB + "code", "fab:code"), int(rank)
            )

    def roles(self) -> tuple[m.Role, ...]:
        out = []
        for s in self.ix.by_type[FAB + "Role"]:
            out.append(
                m.Role(
                    _node_name(s),
                    self.string(s, RDFS_LABEL, "rdfs:label"),
                    tuple(
                        sorted(
                            self.type_code(s, v, "fab:canApprove")
                            for v in self.ix.objects(s, FAB + "canApprove")
                        )
                    ),
                    tuple(
                        sorted(
                            self.type_code(s, v, "fab:canExecute")
                            for v in self.ix.objects(s, FAB + "canExecute")
                        )
                    ),
                )
            )
        return tuple(sorted(out, key=lambda r: r.iri))

    # --- conditions ----------------------------------------------------------------------
    def condition(self, c: Term, depth: int = 0) -> m.Condition:
        if depth > 64:
            raise _fail(c, "conditions are nested more than 64 deep (a cycle?)")
        kinds = self.ix.types(c) & {FAB + k for k in ("Comparison", "Membership", "AllOf", "AnyOf", "Not")}
        if len(kinds) != 1:
            raise _fail(
                c,
                f"condition {_node_name(c)} must have exactly one condition class "
                "(fab:Comparison, fab:Membership, fab:AllOf, fab:AnyOf or fab:Not)",
            )
        kind = kinds.pop()[len(FAB) :]
        if kind == "Comparison":
            op = self.iri(c, self.one(c, FAB + "operator", "fab:operator"), "fab:operator")
            if op not in OPERATORS:
                raise _fail(c, f"fab:operator {op} is not one of fab:gt fab:ge fab:lt fab:le fab:eq fab:ne")
            return m.Comparison(
                self.string(c, FAB + "attribute", "fab:attribute"),
                cast(m.OperatorName, OPERATORS[op]),
                self.value(c, self.one(c, FAB + "value", "fab:value")),
            )
        if kind == "Membership":
            vals = [self.value(c, v) for v in self.ix.objects(c, FAB + "value")]
            if not vals:
                raise _fail(c, "a fab:Membership needs at least one fab:value")
            return m.Membership(
                self.string(c, FAB + "attribute", "fab:attribute"),
                tuple(sorted(set(vals), key=lambda v: (isinstance(v, str), str(v)))),
            )
        if kind == "Not":
            return m.Not(self.condition(self.one(c, FAB + "operand", "fab:operand"), depth + 1))
        ops = [self.condition(o, depth + 1) for o in self.ix.objects(c, FAB + "operand")]
        if not ops:
            raise _fail(c, f"a fab:{kind} needs at least one fab:operand")
        ops.sort(key=repr)
        return m.AllOf(tuple(ops)) if kind == "AllOf" else m.AnyOf(tuple(ops))

    # --- rules ---------------------------------------------------------------------------
    def rules(self) -> tuple[m.Rule, ...]:
        classes = (
            "ApprovalRule",
            "SegregationOfDutyRule",
            "RestrictionRule",
            "FraudCheckRule",
            "NotificationRule",
            "AuditLogRule",
        )
        subjects: dict[str, set[str]] = defaultdict(set)
        for cls in classes:
            for s in self.ix.by_type[FAB + cls]:
                if not isinstance(s, ox.NamedNode):
                    raise _fail(s, f"a rule (fab:{cls}) must be an IRI, not a blank node")
                subjects[s.value].add(cls)
        out: list[m.Rule] = []
        for iri in sorted(subjects):
            cls_set = subjects[iri]
            if cls_set == {"RestrictionRule", "FraudCheckRule"}:
                cls_set = {"FraudCheckRule"}
            if len(cls_set) != 1:
                raise _fail(ox.NamedNode(iri), f"rule {iri} has more than one rule class: {sorted(cls_set)}")
            out.append(self.rule(ox.NamedNode(iri), cls_set.pop()))
        return tuple(out)

    def rule(self, s: ox.NamedNode, cls: str) -> m.Rule:
        base: dict[str, Any] = {
            "iri": s.value,
            "label": self.string(s, RDFS_LABEL, "rdfs:label"),
            "rationale": self.opt_string(s, FAB + "rationale", "fab:rationale"),
            "applies_to": tuple(
                sorted({self.type_code(s, v, "fab:appliesTo") for v in self.ix.objects(s, FAB + "appliesTo")})
            ),
        }
        if cls == "ApprovalRule":
            thr, text = self.decimal(
                s, self.one(s, FAB + "amountThreshold", "fab:amountThreshold"), "fab:amountThreshold"
            )
            req = self.level(
                s, self.one(s, FAB + "requiredAuthority", "fab:requiredAuthority"), "fab:requiredAuthority"
            )
            assert req is not None
            return m.ApprovalRule(**base, threshold=thr, threshold_text=text, required=req)
        if cls == "SegregationOfDutyRule":
            return m.SegregationOfDutyRule(**base)
        if cls in ("RestrictionRule", "FraudCheckRule"):
            return m.RestrictionRule(
                **base,
                condition=self.condition(self.one(s, FAB + "condition", "fab:condition")),
                override=self.level(
                    s,
                    self.opt(s, FAB + "overrideAuthority", "fab:overrideAuthority"),
                    "fab:overrideAuthority",
                ),
                fraud_check=cls == "FraudCheckRule",
            )
        event_iri = self.iri(s, self.one(s, FAB + "onEvent", "fab:onEvent"), "fab:onEvent")
        if event_iri not in EVENTS:
            raise _fail(s, f"fab:onEvent {event_iri} is not fab:Approved, fab:Rejected or fab:AnyDecision")
        event = cast(m.EventName, EVENTS[event_iri])
        min_auth = self.level(s, self.opt(s, FAB + "minAuthority", "fab:minAuthority"), "fab:minAuthority")
        if cls == "NotificationRule":
            recipients = sorted(
                {self._lit(s, v, "fab:recipient") for v in self.ix.objects(s, FAB + "recipient")}
            )
            if not recipients:
                raise _fail(s, f"notification rule {s.value} needs at least one fab:recipient")
            thr_t = self.opt(s, FAB + "amountThreshold", "fab:amountThreshold")
            thr_pair = self.decimal(s, thr_t, "fab:amountThreshold") if thr_t is not None else None
            return m.NotificationRule(
                **base,
                event=event,
                recipients=tuple(recipients),
                min_authority=min_auth,
                threshold=thr_pair[0] if thr_pair else None,
                threshold_text=thr_pair[1] if thr_pair else None,
            )
        flags = sorted({self._lit(s, v, "fab:flag") for v in self.ix.objects(s, FAB + "flag")})
        return m.AuditLogRule(
            **base,
            event=event,
            ledger=self.string(s, FAB + "ledger", "fab:ledger"),
            min_authority=min_auth,
            flags=tuple(flags),
        )

    def _lit(self, s: object, v: Term, what: str) -> str:
        if not isinstance(v, ox.Literal):
            raise _fail(s, f"{what} of {_node_name(s)} must be a literal")
        return v.value

    # --- golden cases --------------------------------------------------------------------
    def golden(self, rule_iris: set[str]) -> tuple[m.GoldenCase, ...]:
        out = []
        for s in self.ix.by_type[FAB + "GoldenCase"]:
            amount, amount_text = self.decimal(
                s, self.one(s, FAB + "txAmount", "fab:txAmount"), "fab:txAmount"
            )
            level = self.level(s, self.one(s, FAB + "txActorLevel", "fab:txActorLevel"), "fab:txActorLevel")
            assert level is not None
            attrs = []
            for a in self.ix.objects(s, FAB + "txAttribute"):
                attrs.append(
                    (
                        self.string(a, FAB + "attribute", "fab:attribute"),
                        self.string(a, FAB + "value", "fab:value"),
                    )
                )
            expect = self.iri(s, self.one(s, FAB + "expect", "fab:expect"), "fab:expect")
            if expect not in (FAB + "Approve", FAB + "Reject"):
                raise _fail(s, f"fab:expect of {_node_name(s)} must be fab:Approve or fab:Reject")
            fired = sorted(
                {self.iri(s, v, "fab:expectFired") for v in self.ix.objects(s, FAB + "expectFired")}
            )
            notified = sorted(
                {self._lit(s, v, "fab:expectNotified") for v in self.ix.objects(s, FAB + "expectNotified")}
            )
            out.append(
                m.GoldenCase(
                    iri=_node_name(s),
                    scenario=self.string(s, FAB + "scenario", "fab:scenario"),
                    tx_type=self.type_code(s, self.one(s, FAB + "txType", "fab:txType"), "fab:txType"),
                    amount=amount,
                    amount_text=amount_text,
                    actor_level=level.code,
                    approver=self.opt_string(s, FAB + "txApprover", "fab:txApprover"),
                    executor=self.opt_string(s, FAB + "txExecutor", "fab:txExecutor"),
                    attributes=tuple(sorted(attrs)),
                    expect="APPROVE" if expect == FAB + "Approve" else "REJECT",
                    expect_fired=tuple(fired) or None,
                    expect_notified=tuple(notified) or None,
                )
            )
        return tuple(sorted(out, key=lambda g: g.scenario))

    def policy(self) -> m.Policy:
        policies = self.ix.by_type[FAB + "Policy"]
        if len(policies) != 1:
            raise CheckFailed(
                f"O must have exactly one fab:Policy (has {len(policies)})", code="ontology.model"
            )
        p = policies[0]
        self.read_reference()
        rules = self.rules()
        return m.Policy(
            iri=_node_name(p),
            title=self.string(p, DCT_TITLE, "dcterms:title"),
            version=self.opt_string(p, FAB + "policyVersion", "fab:policyVersion"),
            types=tuple(sorted(self.types.values(), key=lambda t: t.code)),
            levels=tuple(sorted(self.levels.values(), key=lambda lv: (lv.rank, lv.code))),
            roles=self.roles(),
            rules=rules,
            golden=self.golden({r.iri for r in rules}),
        )


def read_policy(triples: Sequence[Statement]) -> m.Policy:
    """Build the typed model of O; raise ``CheckFailed`` (code ``ontology.model``) if O is not usable."""
    return _Reader(triples).policy()
