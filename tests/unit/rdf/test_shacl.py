"""The ontology gate: Σ₀ accepts the worked examples, and each problem is one plain finding."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pyoxigraph as ox
import pytest
import rdflib

from finops_fabric.errors import Finding, InputError
from finops_fabric.rdf.load import load_graph
from finops_fabric.rdf.shacl import BASE_SHAPES, VOCABULARY, validate_shapes

EX = "https://example.com/acme/policy#"
FAB = "https://w3id.org/finops-fabric/ns#"
PREFIXES = """\
@prefix fab: <https://w3id.org/finops-fabric/ns#> .
@prefix ex: <https://example.com/acme/policy#> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
@prefix dcterms: <http://purl.org/dc/terms/> .
"""
# The reference data of the acceptance policies; the levels are written out of rank order.
COMMON = (
    PREFIXES
    + """
ex:policy a fab:Policy ; dcterms:title "ACME spend controls" .
ex:purchase a fab:TransactionType ; fab:code "purchase" ; rdfs:label "Purchase" .
ex:CFO a fab:AuthorityLevel ; fab:code "CFO" ; fab:rank 4 .
ex:L1 a fab:AuthorityLevel ; fab:code "L1" ; fab:rank 1 .
ex:L2 a fab:AuthorityLevel ; fab:code "L2" ; fab:rank 2 .
ex:Board a fab:AuthorityLevel ; fab:code "Board" ; fab:rank 5 .
ex:L3 a fab:AuthorityLevel ; fab:code "L3" ; fab:rank 3 .
"""
)
T0 = """
ex:approval-purchase a fab:ApprovalRule ; rdfs:label "Purchases over $50k need L2 or above" ;
    fab:appliesTo ex:purchase ; fab:amountThreshold "50000"^^xsd:decimal ; fab:requiredAuthority ex:L2 .
ex:notify-finance a fab:NotificationRule ; rdfs:label "Finance hears about approvals" ;
    fab:onEvent fab:Approved ; fab:recipient "finance@acme.example" .
ex:case-60k-L1 a fab:GoldenCase ; fab:scenario "transaction_60k_L1_actor" ;
    fab:txType ex:purchase ; fab:txAmount "60000"^^xsd:decimal ; fab:txActorLevel ex:L1 ;
    fab:txApprover "u-1" ; fab:txExecutor "u-2" ;
    fab:expect fab:Reject ; fab:expectFired ex:approval-purchase .
"""
T1 = """
ex:approval-purchase a fab:ApprovalRule ; rdfs:label "Purchases over $100k need L3 or above" ;
    fab:appliesTo ex:purchase ; fab:amountThreshold "100000"^^xsd:decimal ; fab:requiredAuthority ex:L3 .
ex:notify-audit-senior a fab:NotificationRule ; rdfs:label "Audit hears about approvals by L3 or above" ;
    fab:onEvent fab:Approved ; fab:minAuthority ex:L3 ; fab:recipient "audit@acme.example" .
ex:audit-senior a fab:AuditLogRule ; rdfs:label "Approvals by L3 or above go to the immutable ledger" ;
    fab:onEvent fab:Approved ; fab:minAuthority ex:L3 ; fab:ledger "immutable" ; fab:flag "L3_override" .
ex:case-105k-L3 a fab:GoldenCase ; fab:scenario "transaction_105k_L3_actor" ;
    fab:txType ex:purchase ; fab:txAmount "105000"^^xsd:decimal ; fab:txActorLevel ex:L3 ;
    fab:txApprover "u-1" ; fab:txExecutor "u-2" ; fab:expect fab:Approve ;
    fab:expectNotified "finance@acme.example", "audit@acme.example" .
"""
WIRE = """
ex:wire a fab:TransactionType ; fab:code "wire" ; rdfs:label "Wire transfer" .
ex:approval-wire-large a fab:ApprovalRule ; rdfs:label "Wires over $1M need the CFO" ;
    fab:appliesTo ex:wire ; fab:amountThreshold 1000000 ; fab:requiredAuthority ex:CFO .
ex:sod-wire a fab:SegregationOfDutyRule ; rdfs:label "Whoever approves a wire must not execute it" ;
    fab:appliesTo ex:wire .
ex:sanctions a fab:RestrictionRule ; rdfs:label "No wires to sanctioned countries" ; fab:appliesTo ex:wire ;
    fab:condition [ a fab:Membership ; fab:attribute "country" ; fab:value "IR", "KP", "SY", "CU" ] .
ex:fraud-wire a fab:FraudCheckRule ; rdfs:label "High-risk vendors over $25k need the CFO" ;
    fab:appliesTo ex:wire ; fab:overrideAuthority ex:CFO ;
    fab:condition [ a fab:AllOf ;
        fab:operand [ a fab:Comparison ; fab:attribute "vendor_risk" ;
                      fab:operator fab:eq ; fab:value "high" ] ,
                    [ a fab:Not ; fab:operand [ a fab:Comparison ; fab:attribute "amount" ;
                                                fab:operator fab:le ; fab:value "25000"^^xsd:decimal ] ] ] .
ex:treasury-approver a fab:Role ; rdfs:label "Treasury approver" ; fab:canApprove ex:wire .
ex:case-wire-sanctioned a fab:GoldenCase ; fab:scenario "wire_1k_to_KP" ;
    fab:txType ex:wire ; fab:txAmount "1000"^^xsd:decimal ; fab:txActorLevel ex:Board ;
    fab:txAttribute [ fab:attribute "country" ; fab:value "KP" ] ;
    fab:expect fab:Reject ; fab:expectFired ex:sanctions .
"""
P15_EXTRA = """
ex:refund a fab:TransactionType ; fab:code "refund" ; rdfs:label "Refund" .
ex:vendor_onboarding a fab:TransactionType ; fab:code "vendor_onboarding" ; rdfs:label "Vendor onboarding" .
ex:approval-vendor a fab:ApprovalRule ; rdfs:label "vendor_onboarding over 0.01 needs L2" ;
    fab:appliesTo ex:vendor_onboarding ; fab:amountThreshold "0.01"^^xsd:decimal ;
    fab:requiredAuthority ex:L2 .
ex:approval-refund a fab:ApprovalRule ; rdfs:label "refund over 10000 needs L2" ;
    fab:appliesTo ex:refund ; fab:amountThreshold "10000"^^xsd:decimal ; fab:requiredAuthority ex:L2 .
ex:any-risk a fab:RestrictionRule ; rdfs:label "Risky channels" ;
    fab:condition [ a fab:AnyOf ;
                    fab:operand [ a fab:Membership ; fab:attribute "channel" ; fab:value "p2p" ] ] .
ex:notify-rejections a fab:NotificationRule ; rdfs:label "Finance hears about rejections" ;
    fab:onEvent fab:Rejected ; fab:amountThreshold 10 ; fab:recipient "finance@acme.example" .
"""
FRAUD_COVERAGE_SPARQL = """\
@prefix sh: <http://www.w3.org/ns/shacl#> .
@prefix fab: <https://w3id.org/finops-fabric/ns#> .
@prefix org: <https://example.com/acme/shapes#> .
org:FraudCoverage a sh:NodeShape ;
    sh:targetNode fab:TransactionType ;
    sh:sparql [
        sh:message "every transaction type must be covered by a fraud check rule" ;
        sh:select \"\"\"
            SELECT $this ?value WHERE {
                ?value a <https://w3id.org/finops-fabric/ns#TransactionType> .
                FILTER NOT EXISTS { ?rule a <https://w3id.org/finops-fabric/ns#FraudCheckRule> ;
                                          <https://w3id.org/finops-fabric/ns#appliesTo> ?value }
            }\"\"\" ] .
"""
FRAUD_COVERAGE_CORE = """\
@prefix sh: <http://www.w3.org/ns/shacl#> .
@prefix fab: <https://w3id.org/finops-fabric/ns#> .
<https://example.com/acme/shapes#FraudCoverage> a sh:NodeShape ;
    sh:targetClass fab:TransactionType ;
    sh:property [ sh:path [ sh:inversePath fab:appliesTo ] ;
        sh:qualifiedValueShape [ sh:class fab:FraudCheckRule ] ; sh:qualifiedMinCount 1 ] .
"""
AUTHORITY = "fab:requiredAuthority ex:L2"
PURCHASE_FRAUD = """
ex:fraud-purchase a fab:FraudCheckRule ; rdfs:label "Risky purchase vendors" ; fab:appliesTo ex:purchase ;
    fab:condition [ a fab:Comparison ; fab:attribute "vendor_risk" ; fab:operator fab:eq ;
                    fab:value "high" ] .
"""


def write(directory: Path, **files: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name.replace("_", ".")).write_text(text, encoding="utf-8")
    return directory


def gate(tmp_path: Path, rules: str, *, common: str = COMMON, shapes: tuple[Path, ...] = ()) -> list[Finding]:
    """The ontology gate's findings for the reference data (common.ttl) plus ``rules`` (rules.ttl)."""
    policy = write(tmp_path / "o", common_ttl=common, rules_ttl=PREFIXES + rules)
    return validate_shapes(load_graph(policy), shapes)


def only(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, [f.message for f in findings]
    return findings[0]


# --- Σ₀ accepts the policies of the worked example ---------------------------------------------


@pytest.mark.parametrize(
    "rules", [T0, T1, T1 + WIRE, T0 + WIRE + P15_EXTRA + PURCHASE_FRAUD], ids=["t0", "t1", "t2", "p15"]
)
def test_the_worked_example_conforms(tmp_path: Path, rules: str) -> None:
    assert gate(tmp_path, rules) == []


def test_the_shared_corpus_conforms(tmp_path: Path, policies: SimpleNamespace) -> None:
    policy = write(tmp_path / "o", policy_ttl=policies.REFERENCE + policies.FULL_RULES)
    assert validate_shapes(load_graph(policy)) == []


def test_a_policy_split_over_three_files_conforms(tmp_path: Path) -> None:
    policy = write(tmp_path / "o", common_ttl=COMMON, rules_ttl=PREFIXES + T1, wire_ttl=PREFIXES + WIRE)
    assert validate_shapes(load_graph(policy)) == []


# --- one finding per problem, in words ---------------------------------------------------------


def test_a_missing_required_authority_names_the_rule_and_where_it_is(tmp_path: Path) -> None:
    rules = (
        T1
        + """
ex:approval-purchase-board a fab:ApprovalRule ;
    rdfs:label "Purchases over $5M need the board" ;
    fab:appliesTo ex:purchase ;
    fab:amountThreshold "5000000"^^xsd:decimal .
"""
    )
    f = only(gate(tmp_path, rules))
    assert f.message == (
        'Rule "Purchases over $5M need the board" (ex:approval-purchase-board) has no fab:requiredAuthority: '
        "an approval rule needs exactly one required authority level"
    )
    assert (f.gate, f.severity, f.focus) == ("ontology", "violation", EX + "approval-purchase-board")
    assert (f.path, f.value, f.label) == ("fab:requiredAuthority", None, "Purchases over $5M need the board")
    assert f.location is not None and f.location.file is not None
    lines = Path(f.location.file).read_text().splitlines()
    assert lines[(f.location.line or 0) - 1].startswith("ex:approval-purchase-board a fab:ApprovalRule")


def test_a_threshold_that_is_not_a_number_is_one_finding_naming_the_value(tmp_path: Path) -> None:
    rules = (
        T1
        + """
ex:approval-purchase-cfo a fab:ApprovalRule ; rdfs:label "Purchases over some amount need the CFO" ;
    fab:appliesTo ex:purchase ; fab:amountThreshold "string_not_number" ; fab:requiredAuthority ex:CFO .
"""
    )
    f = only(gate(tmp_path, rules))  # not also "is not greater than 0" for the same value
    assert f.message == (
        'Rule "Purchases over some amount need the CFO" (ex:approval-purchase-cfo): '
        'fab:amountThreshold "string_not_number" is not a decimal number'
    )
    assert (f.focus, f.path) == (EX + "approval-purchase-cfo", "fab:amountThreshold")
    assert f.value == "string_not_number"


@pytest.mark.parametrize(
    ("threshold", "says"),
    [
        ('"1e5"^^xsd:double', 'fab:amountThreshold "1e5"^^xsd:double is not a decimal number'),
        ("-5", "fab:amountThreshold -5 is not greater than 0: an approval rule needs exactly one amount"),
        ('"0"^^xsd:decimal', "fab:amountThreshold 0 is not greater than 0"),
    ],
)
def test_bad_thresholds(tmp_path: Path, threshold: str, says: str) -> None:
    rules = f'ex:r a fab:ApprovalRule ; rdfs:label "R" ; fab:amountThreshold {threshold} ; {AUTHORITY} .'
    assert says in only(gate(tmp_path, rules)).message


def test_an_ill_typed_number_is_refused_as_its_file_is_read(tmp_path: Path) -> None:
    rules = 'ex:r a fab:ApprovalRule ; rdfs:label "R" ;\n  fab:amountThreshold "abc"^^xsd:decimal ; '
    rules += f"{AUTHORITY} ."
    with pytest.raises(InputError) as ei:
        gate(tmp_path, rules)
    err = ei.value
    assert err.code == "fabric.bad_literal" and err.exit_code == 2
    assert err.location is not None and err.location.node == EX + "r"
    assert (Path(str(err.location.file)).name, err.location.line) == ("rules.ttl", 7)
    assert "'abc' is not a decimal number" in err.message


def test_integer_and_decimal_thresholds_are_both_accepted(tmp_path: Path) -> None:
    rules = """
ex:a a fab:ApprovalRule ; rdfs:label "A" ; fab:amountThreshold 5 ; fab:requiredAuthority ex:L2 .
ex:b a fab:ApprovalRule ; rdfs:label "B" ; fab:amountThreshold 5.25 ; fab:requiredAuthority ex:L2 .
"""
    assert gate(tmp_path, rules) == []


def test_an_unknown_authority_level_lists_the_valid_levels_by_rank(tmp_path: Path) -> None:
    rules = 'ex:r a fab:ApprovalRule ; rdfs:label "R" ; fab:amountThreshold 5 ; fab:requiredAuthority ex:L7 .'
    f = only(gate(tmp_path, rules))
    assert f.message == (
        'Rule "R" (ex:r): fab:requiredAuthority ex:L7 is not a known authority level; '
        "valid levels: L1, L2, L3, CFO, Board"
    )
    assert (f.path, f.value) == ("fab:requiredAuthority", EX + "L7")


def test_a_level_written_as_its_code_points_at_the_node(tmp_path: Path) -> None:
    rules = 'ex:r a fab:ApprovalRule ; rdfs:label "R" ; fab:amountThreshold 5 ; fab:requiredAuthority "L2" .'
    assert only(gate(tmp_path, rules)).message.endswith("Board (write the node ex:L2, not its code)")


def test_an_unknown_transaction_type_lists_the_valid_types(tmp_path: Path) -> None:
    rules = 'ex:s a fab:SegregationOfDutyRule ; rdfs:label "S" ; fab:appliesTo ex:wires .'
    assert only(gate(tmp_path, rules)).message == (
        'Rule "S" (ex:s): fab:appliesTo ex:wires is not a known transaction type; valid types: purchase'
    )


def test_two_required_authorities_are_listed(tmp_path: Path) -> None:
    rules = f'ex:r a fab:ApprovalRule ; rdfs:label "R" ; fab:amountThreshold 5 ; {AUTHORITY}, ex:L3 .'
    message = only(gate(tmp_path, rules)).message
    assert message.startswith('Rule "R" (ex:r) has 2 fab:requiredAuthority values (ex:L2, ex:L3); at most 1')


def test_a_rule_that_is_a_blank_node_is_refused_with_a_stable_name(tmp_path: Path) -> None:
    rules = '[] a fab:SegregationOfDutyRule ; rdfs:label "Nameless duty split" ; fab:appliesTo ex:purchase .'
    first = only(gate(tmp_path / "1", rules))
    assert first.message == (
        'Rule "Nameless duty split" (a blank node) is not named by an IRI: '
        "a rule's identity is its IRI, so a rule cannot be a blank node"
    )
    assert first.focus.startswith("_:b") and first.path is None
    assert first.location is not None and first.location.line is not None
    assert first.focus == only(gate(tmp_path / "2", rules)).focus  # blank labels change, the name does not


def test_a_fraud_check_rule_is_checked_as_a_restriction_without_inference(tmp_path: Path) -> None:
    f = only(gate(tmp_path, 'ex:f a fab:FraudCheckRule ; rdfs:label "Fraud" .'))
    assert f.message.startswith('Rule "Fraud" (ex:f) has no fab:condition: a restriction rule needs')


def test_a_bad_condition_is_named_by_its_attribute_and_rule(tmp_path: Path) -> None:
    rules = """
ex:r a fab:RestrictionRule ; rdfs:label "Big ones" ;
    fab:condition [ a fab:AllOf ; fab:operand [ a fab:Comparison ; fab:attribute "amount" ;
                                                fab:operator fab:greater ; fab:value 5 ] ] .
ex:u a fab:RestrictionRule ; rdfs:label "Untyped" ; fab:condition [ fab:attribute "x" ; fab:value "y" ] .
"""
    bad_operator, untyped = gate(tmp_path, rules)
    assert bad_operator.message == (
        'Condition on "amount" of rule "Big ones" (ex:r): fab:operator fab:greater is not one of '
        "fab:gt, fab:ge, fab:lt, fab:le, fab:eq or fab:ne"
    )
    assert bad_operator.focus == EX + "r"
    assert untyped.message == (
        'Rule "Untyped" (ex:u): fab:condition [] is not a condition '
        "(fab:Comparison, fab:Membership, fab:AllOf, fab:AnyOf or fab:Not)"
    )


def test_a_condition_may_carry_another_type_but_not_be_a_literal(tmp_path: Path) -> None:
    rules = """
ex:tagged a fab:RestrictionRule ; rdfs:label "Tagged" ;
    fab:condition [ a fab:Membership, ex:Reviewed ; fab:attribute "country" ; fab:value "KP" ] .
ex:literal a fab:RestrictionRule ; rdfs:label "Literal" ; fab:condition "country = KP" .
"""
    assert only(gate(tmp_path, rules)).message == (
        'Rule "Literal" (ex:literal): fab:condition "country = KP" is not a condition '
        "(fab:Comparison, fab:Membership, fab:AllOf, fab:AnyOf or fab:Not)"
    )


def test_an_event_must_be_one_of_the_three(tmp_path: Path) -> None:
    rules = 'ex:n a fab:NotificationRule ; rdfs:label "N" ; fab:onEvent "Approved" ; fab:recipient "a@b" .'
    assert only(gate(tmp_path, rules)).message == (
        'Rule "N" (ex:n): fab:onEvent "Approved" is not one of fab:Approved, fab:Rejected or fab:AnyDecision'
    )


def test_a_transaction_type_code_must_be_lower_case(tmp_path: Path) -> None:
    f = only(gate(tmp_path, 'ex:w a fab:TransactionType ; fab:code "Wire" ; rdfs:label "Wire" .'))
    assert f.message.startswith('Transaction type "Wire" (ex:w): fab:code "Wire" does not match the pattern')


def test_a_golden_case_attribute_without_a_value(tmp_path: Path) -> None:
    approver = 'fab:txApprover "u-1"'
    rules = T0.replace(approver, f'fab:txAttribute [ fab:attribute "country" ] ; {approver}')
    f = only(gate(tmp_path, rules))
    assert f.message.startswith(
        'Transaction attribute on "country" of golden case "transaction_60k_L1_actor" (ex:case-60k-L1) '
        "has no fab:value"
    )


# --- the global constraints: uniqueness and exactly one policy ----------------------------------


def test_duplicate_level_codes_and_ranks_and_type_codes(tmp_path: Path) -> None:
    rules = """
ex:L2b a fab:AuthorityLevel ; fab:code "L2" ; fab:rank "03"^^xsd:integer .
ex:purchase2 a fab:TransactionType ; fab:code "purchase" ; rdfs:label "Purchase again" .
"""
    code, rank, type_code = gate(tmp_path, rules)
    assert code.message == 'Authority levels ex:L2 and ex:L2b share the code "L2": level codes must be unique'
    assert (code.focus, code.path, code.value) == (EX + "L2", "fab:code", "L2")
    assert code.nodes == (EX + "L2", EX + "L2b")
    assert rank.message == "Authority levels ex:L2b and ex:L3 share the rank 3: ranks must be unique"
    assert type_code.message == (
        'Transaction types ex:purchase and ex:purchase2 share the code "purchase": type codes must be unique'
    )
    assert type_code.location is not None and type_code.location.file is not None
    assert type_code.location.file.endswith("common.ttl")


def test_duplicate_golden_scenarios(tmp_path: Path) -> None:
    rules = T0 + T0[T0.index("ex:case-60k-L1") :].replace("ex:case-60k-L1", "ex:case-again")
    messages = [f.message for f in gate(tmp_path, rules)]
    assert messages == ['Golden cases ex:case-60k-L1 and ex:case-again share the scenario name '
                        '"transaction_60k_L1_actor": scenarios must be unique']  # fmt: skip


def test_two_policy_nodes(tmp_path: Path) -> None:
    f = only(gate(tmp_path, 'ex:policy2 a fab:Policy ; dcterms:title "Second" .'))
    assert f.message == "O has 2 fab:Policy nodes (ex:policy and ex:policy2): a policy needs exactly one"
    assert f.nodes == (EX + "policy", EX + "policy2")


def test_no_policy_node(tmp_path: Path) -> None:
    f = only(gate(tmp_path, T0, common=COMMON.replace("ex:policy a fab:Policy", "ex:policy a ex:Thing")))
    assert (f.focus, f.message) == (FAB + "Policy", "O has no fab:Policy node: a policy needs exactly one, "
                                    "with a dcterms:title")  # fmt: skip


# --- the organisation's shapes -----------------------------------------------------------------


def test_an_organisation_shape_that_fails_then_passes(tmp_path: Path) -> None:
    schema = write(tmp_path / "schema", fraud_ttl=FRAUD_COVERAGE_CORE) / "fraud.ttl"
    f = only(gate(tmp_path / "before", T0, shapes=(schema,)))
    assert (f.focus, f.severity) == (EX + "purchase", "violation")
    assert f.message.startswith('Transaction type "Purchase" (ex:purchase)')
    assert f.message.endswith("has fewer than 1 ^fab:appliesTo that is a fab:FraudCheckRule")
    assert gate(tmp_path / "after", T0 + PURCHASE_FRAUD, shapes=(schema,)) == []


def test_an_organisation_message_is_used(tmp_path: Path) -> None:
    shapes = FRAUD_COVERAGE_CORE.replace(
        "sh:qualifiedMinCount 1 ]", 'sh:qualifiedMinCount 1 ; sh:message "every type needs a fraud check" ]'
    )
    schema = write(tmp_path / "schema", fraud_ttl=shapes) / "fraud.ttl"
    f = only(gate(tmp_path, T0, shapes=(schema,)))
    assert f.message == 'Transaction type "Purchase" (ex:purchase): every type needs a fraud check'


def test_a_sparql_organisation_shape_is_refused(tmp_path: Path) -> None:
    schema = write(tmp_path / "schema", fraud_ttl=FRAUD_COVERAGE_SPARQL) / "fraud.ttl"
    with pytest.raises(InputError) as e:
        gate(tmp_path, T0, shapes=(schema,))
    assert e.value.code == "fabric.shapes_program" and "sh:sparql" in e.value.message
    assert e.value.location is not None and (e.value.location.file, e.value.location.line) == (str(schema), 6)


def test_an_organisation_shape_may_be_n_triples_and_a_warning(tmp_path: Path) -> None:
    shapes = """\
@prefix sh: <http://www.w3.org/ns/shacl#> .
@prefix fab: <https://w3id.org/finops-fabric/ns#> .
<https://example.com/acme/shapes#Cap> a sh:NodeShape ; sh:targetClass fab:ApprovalRule ;
    sh:property [ sh:path fab:amountThreshold ; sh:maxInclusive 1000000 ; sh:severity sh:Warning ] .
"""
    triples = ox.parse(shapes.encode(), ox.RdfFormat.TURTLE)
    schema = tmp_path / "cap.nt"
    schema.write_bytes(ox.serialize(triples, format=ox.RdfFormat.N_TRIPLES) or b"")
    rules = f'ex:r a fab:ApprovalRule ; rdfs:label "R" ; fab:amountThreshold 2000000 ; {AUTHORITY} .'
    f = only(gate(tmp_path, rules, shapes=(schema,)))
    assert f.severity == "warning"
    assert f.message == 'Rule "R" (ex:r): fab:amountThreshold 2000000 is greater than 1000000'


@pytest.mark.parametrize(
    "constraint",
    [
        'sh:path fab:code ; sh:minCount "x"',
        'sh:path "code" ; sh:minCount 1',
        'sh:path fab:code ; sh:pattern "(["',
    ],
)
def test_a_broken_organisation_shape_is_an_input_error(tmp_path: Path, constraint: str) -> None:
    broken = (
        "@prefix sh: <http://www.w3.org/ns/shacl#> .\n@prefix fab: <https://w3id.org/finops-fabric/ns#> .\n"
        f"<https://example.com/s#S> a sh:NodeShape ; sh:targetClass fab:TransactionType ;\n"
        f"    sh:property [ {constraint} ] .\n"
    )
    schema = write(tmp_path / "schema", broken_ttl=broken) / "broken.ttl"
    with pytest.raises(InputError) as e:
        gate(tmp_path, T0, shapes=(schema,))
    assert e.value.code == "fabric.bad_schema" and "broken.ttl" in e.value.message


# --- hostile text, typos, order ----------------------------------------------------------------


def test_hostile_text_in_a_label_stays_text(tmp_path: Path) -> None:
    label = 'Evil "quoted" {label} {?value} $this \x1b[31m\nsecond line """ `rm -rf /` <script>'
    escaped = label.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    rules = f'ex:h a fab:ApprovalRule ; rdfs:label "{escaped}" ; fab:amountThreshold 5 .'
    f = only(gate(tmp_path, rules))
    assert f.label == label
    assert "\n" not in f.message and "\x1b" not in f.message  # one line, no terminal escapes
    shown = 'Rule "Evil \\"quoted\\" {label} {?value} $this \\u001b[31m\\nsecond line '
    shown += '\\"\\"\\" `rm -rf /` <script>"'
    assert f.message.startswith(shown + " (ex:h) has no fab:requiredAuthority: an approval rule needs")


def test_misspelt_fab_terms_are_violations_with_the_nearest_term(tmp_path: Path) -> None:
    rules = """
ex:r a fab:ApprovalRule ; rdfs:label "R" ; fab:apliesTo ex:purchase ; fab:amountThreshold 5 ;
    fab:requiredAuthority ex:L2 .
ex:q a fab:AprovalRule ; rdfs:label "Q" .
"""
    typed, used = gate(tmp_path, rules)
    assert (used.severity, used.path, used.message) == (
        "violation", "fab:apliesTo",
        'Rule "R" (ex:r) uses fab:apliesTo, which the policy language does not define; '
        "did you mean fab:appliesTo?",
    )  # fmt: skip
    assert used.location is not None and used.location.line == 7  # the line fab:apliesTo is on
    assert used.location.file is not None and used.location.file.endswith("rules.ttl")
    assert (typed.severity, typed.value) == ("violation", FAB + "AprovalRule")
    assert typed.message == (
        'Node "Q" (ex:q) is typed fab:AprovalRule, which the policy language does not define; '
        "did you mean fab:ApprovalRule?"
    )


def test_a_rule_of_an_unknown_type_is_a_violation_even_when_nothing_refers_to_it(tmp_path: Path) -> None:
    rules = """
ex:sod-wire a fab:SegregationOfDutiesRule ;
    rdfs:label "Whoever approves a wire must not execute it" .
"""
    f = only(gate(tmp_path, rules))
    assert f.severity == "violation" and f.focus == EX + "sod-wire"
    assert f.message.endswith("is typed fab:SegregationOfDutiesRule, which the policy language does not "
                              "define; did you mean fab:SegregationOfDutyRule?")  # fmt: skip
    assert f.location is not None and f.location.line == 7


def test_a_misspelt_property_is_found_on_its_own_line_and_case_does_not_hide_it(tmp_path: Path) -> None:
    rules = """
ex:audit-senior a fab:AuditLogRule ;
    rdfs:label "Approvals by L3 or above go to the immutable ledger" ;
    fab:onEvent fab:Approved ;
    fab:minAuthorty ex:L3 ;
    fab:ledger "immutable" ; fab:flag "L3_override" .
ex:notify a fab:NotificationRule ; rdfs:label "N" ; fab:onEvent fab:approved ; fab:recipient "a@b.example" .
"""
    findings = gate(tmp_path, rules)
    by_term = {f.value: f for f in findings}
    minimum = by_term[FAB + "minAuthorty"]
    assert minimum.message.endswith("did you mean fab:minAuthority?")
    assert minimum.location is not None and minimum.location.line == 10
    approved = by_term[FAB + "approved"]  # a value: reported once, as the unknown term
    assert approved.message == (
        'Rule "N" (ex:notify) has fab:onEvent fab:approved, which the policy language does not define; '
        "did you mean fab:Approved?"
    )
    assert len(findings) == 2, [f.message for f in findings]


def test_an_unknown_term_nothing_is_close_to_says_so(tmp_path: Path) -> None:
    rules = (
        'ex:r a fab:ApprovalRule ; rdfs:label "R" ; fab:amountThreshold 5 ; fab:requiredAuthority ex:L2 ; '
        'fab:zzqx "1" .\n'
    )
    f = only(gate(tmp_path, rules))
    assert f.severity == "violation"
    assert f.message.endswith("uses fab:zzqx, which the policy language does not define; no defined term "
                              "is close; see the policy language's vocabulary (vocab.ttl)")  # fmt: skip


def test_findings_are_sorted_and_repeatable(tmp_path: Path) -> None:
    rules = """
ex:z a fab:ApprovalRule ; rdfs:label "Z" ; fab:amountThreshold "x" .
ex:a a fab:ApprovalRule ; fab:amountThreshold 5 ; fab:requiredAuthority ex:L9 .
[] a fab:ApprovalRule ; rdfs:label "Blank" ; fab:amountThreshold 5 ; fab:requiredAuthority ex:L2 .
"""
    first = gate(tmp_path, rules)
    assert first == gate(tmp_path, rules)  # the files are loaded again: new blank node labels
    assert [f.sort_key() for f in first] == sorted(f.sort_key() for f in first)
    assert len(first) == 5  # the blank rule; ex:a: label, level; ex:z: threshold, authority


# --- the shipped files -------------------------------------------------------------------------


def test_the_vocabulary_defines_every_term_the_shapes_use_with_a_label_and_comment() -> None:
    vocab = rdflib.Graph().parse(VOCABULARY)
    shapes = rdflib.Graph().parse(BASE_SHAPES)
    used = {str(t) for t in shapes.all_nodes() if isinstance(t, rdflib.URIRef) and t.startswith(FAB)}
    defined = {str(s) for s in vocab.subjects() if str(s).startswith(FAB)}
    assert used <= defined and len(defined) == 16 + 31 + 11  # classes, properties, individuals
    for term in map(rdflib.URIRef, defined):
        assert (term, rdflib.RDFS.label, None) in vocab and (term, rdflib.RDFS.comment, None) in vocab, term
    fraud, restriction = rdflib.URIRef(FAB + "FraudCheckRule"), rdflib.URIRef(FAB + "RestrictionRule")
    assert (fraud, rdflib.RDFS.subClassOf, restriction) in vocab
