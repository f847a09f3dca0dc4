"""A bare hand-written decide for the p15 policy of bench_decide.py, in policy language 1.1.

``bare_decide(tx)`` is what a programmer would write by hand for exactly those 15 rules, with
the same semantics as generator v3 (the input checks of language 1.1 included: an undeclared
or missing type, a missing, non-plain, non-finite, float or negative amount, an undeclared or
missing level each fire ``fab:FailClosed/<field>``; a missing field a rule reads fails closed),
and nothing else: it returns the IRIs of the rules that fired (REJECT when there are any; the
only notification of p15 goes to finance on every rejection), no reasons, no decision object.
Amounts are expected as Decimal (the fast path) but any input is decided. Stdlib only.
"""

import re
from collections.abc import Mapping
from decimal import Decimal

P = "https://example.com/acme/policy#"
FAB = "https://w3id.org/finops-fabric/ns#"
FC_TYPE, FC_AMOUNT, FC_LEVEL = (
    FAB + "FailClosed/type",
    FAB + "FailClosed/amount",
    FAB + "FailClosed/actor_level",
)
RANKS = {"L1": 1, "L2": 2, "L3": 3, "CFO": 4, "Board": 5}
_STRICT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)").fullmatch
A_P, A_PB, A_PL2 = P + "approval-purchase", P + "approval-purchase-board", P + "approval-purchase-l2"
A_W, A_WC = P + "approval-wire", P + "approval-wire-cfo"
A_R, A_RL3 = P + "approval-refund", P + "approval-refund-l3"
A_PAY, A_PAYB = P + "approval-payroll", P + "approval-payroll-board"
A_V = P + "approval-vendor"
SOD_W, SOD_P = P + "sod-wire", P + "sod-payroll"
FRAUD, SANCTIONS = P + "fraud-check", P + "sanctions"
TYPED = (A_P, A_PB, A_PL2, A_W, A_WC, A_R, A_RL3, A_PAY, A_PAYB, A_V, SOD_W, SOD_P)
SANCTIONED = frozenset(("IR", "KP", "SY", "CU"))
D0, D001 = Decimal(0), Decimal("0.01")
D10K, D25K, D50K, D100K, D250K = (
    Decimal(10000),
    Decimal(25000),
    Decimal(50000),
    Decimal(100000),
    Decimal(250000),
)
D1M, D5M = Decimal(1000000), Decimal(5000000)


def _text(v):
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, Decimal):
        return str(v) if v.is_finite() else None
    return None


def _amount(v):
    if isinstance(v, str):
        return Decimal(v) if _STRICT(v) else None
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return Decimal(v)
    if isinstance(v, Decimal):
        return v if v.is_finite() else None
    return None


def _sod(get, rule, fired):
    approver, executor = _text(get("approver_id")), _text(get("executor_id"))
    if approver is None or executor is None or approver == executor:
        fired.append(rule)


def bare_decide(tx):
    get = tx.get
    t = get("type")
    amount = get("amount")
    if type(amount) is Decimal:
        if not amount.is_finite():
            amount = None
    else:
        amount = _amount(amount)
    level = get("actor_level")
    rank = RANKS.get(level) if isinstance(level, str) else None
    attrs = get("attributes")
    if type(attrs) is not dict and not isinstance(attrs, Mapping):
        attrs = {}
    fired = []
    if amount is None or amount < D0:
        fired.append(FC_AMOUNT)
    if rank is None:
        fired.append(FC_LEVEL)
    risk = attrs.get("vendor_risk")
    if type(risk) is not str:
        risk = _text(risk)
    if amount is None or risk is None or (amount > D25K and risk == "high" and (rank is None or rank < 4)):
        fired.append(FRAUD)
    country = attrs.get("country")
    if type(country) is not str:
        country = _text(country)
    if country is None or country in SANCTIONED:
        fired.append(SANCTIONS)
    if t == "purchase":
        if amount is None:
            fired += (A_PL2, A_P, A_PB)
        elif amount > D25K:
            if rank is None or rank < 2:
                fired.append(A_PL2)
            if amount > D100K:
                if rank is None or rank < 3:
                    fired.append(A_P)
                if amount > D1M and (rank is None or rank < 5):
                    fired.append(A_PB)
    elif t == "wire":
        if amount is None:
            fired += (A_W, A_WC)
        elif amount > D50K:
            if rank is None or rank < 3:
                fired.append(A_W)
            if amount > D1M and (rank is None or rank < 4):
                fired.append(A_WC)
        _sod(get, SOD_W, fired)
    elif t == "refund":
        if amount is None:
            fired += (A_R, A_RL3)
        elif amount > D10K:
            if rank is None or rank < 2:
                fired.append(A_R)
            if amount > D50K and (rank is None or rank < 3):
                fired.append(A_RL3)
    elif t == "payroll":
        if amount is None:
            fired += (A_PAY, A_PAYB)
        elif amount > D250K:
            if rank is None or rank < 4:
                fired.append(A_PAY)
            if amount > D5M and (rank is None or rank < 5):
                fired.append(A_PAYB)
        _sod(get, SOD_P, fired)
    elif t == "vendor_onboarding":
        if amount is None or (amount > D001 and (rank is None or rank < 2)):
            fired.append(A_V)
    elif isinstance(t, str):
        fired.append(FC_TYPE)
    else:
        fired.append(FC_TYPE)
        fired += TYPED
    return fired
