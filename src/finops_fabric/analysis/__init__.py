"""Exact analysis of the decision space of O: what a change ΔO does (``mu impact``), what O's
rules can and cannot do (``mu analyze``), and a case set complete for one O.

The engine works on the typed model (``finops_fabric.model``) only. Each field of a transaction
is cut into finitely many atoms at the constants O mentions (:mod:`.fields`, :mod:`.space`);
every rule becomes a decision diagram over those atoms (:mod:`.mdd`, :mod:`.encode`); the
difference of two policies is folded into one diagram whose paths are disjoint regions
(:mod:`.engine`), written as ``when`` constraints in the policy's own terms (:mod:`.render`,
:mod:`.region`) with a summary (:mod:`.summary`) and a witness that both generated enforcers and
the reference interpreter decide before anyone reads it (:mod:`.verify`).

Soundness and completeness, in one paragraph: every leaf of every rule, every threshold,
override, minimum authority and input check compares a field with a constant of O (or of the
other side); the atoms of a field are the classes of values that no such comparison can tell
apart (the constants themselves, the open intervals between decimal constants, "any other
text", "absent"; see :mod:`.fields`), so a transaction's outcome on either side is a function of
its atoms alone. The diagrams compute that function exactly, atom by atom (no approximation,
no sampling), and every path of the difference diagram is a box of atoms on which the
difference is constant. Hence the regions are disjoint, each holds only transactions whose
outcome differs as stated (sound), and together they hold every such transaction (complete).
The property tests check both directions against the interpreter on random policies, changes
and transactions. What the engine cannot cut exactly it refuses (:class:`.fields.Unsupported`)
instead of approximating; budgets on diagram nodes and regions make it stop with the size it
reached rather than run away.
"""
