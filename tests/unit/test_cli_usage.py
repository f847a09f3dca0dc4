"""`mu` explains itself: every option is described, `mu --help` shows the workflow with an example
of each step, a mistyped command, action, choice or option gets "did you mean", the product
never speaks of issues or of commands that are not there, and every command that waits for a
daemon takes --wait."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
from harness import Run, write_tx

from finops_fabric.cli import build_parser, main
from finops_fabric.commands._usage import walk

ROOT = Path(__file__).resolve().parents[2]


def test_every_option_of_every_command_has_a_description() -> None:
    undescribed = []
    for parser in walk(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                undescribed += [f"{parser.prog} {c.dest}" for c in action._choices_actions if not c.help]
            elif not action.help or action.help == argparse.SUPPRESS:
                undescribed.append(f"{parser.prog} {'/'.join(action.option_strings) or action.dest}")
    assert undescribed == []


def test_the_walk_reaches_nested_actions() -> None:
    progs = {p.prog for p in walk(build_parser())}
    assert {"mu", "mu generate", "mu receipt export", "mu roster add"} <= progs


def test_help_shows_the_workflow_with_an_example_of_each_step(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    listed = re.findall(r"^    (\S+)\s", out.split("options:")[0], re.MULTILINE)
    assert listed[:7] == ["init", "validate", "generate", "test", "decide", "deploy", "audit-trail"]
    assert listed[7:] == sorted(listed[7:]) and "keygen" in listed[7:]
    steps = ["init", "validate", "generate", "test", "deploy", "audit"]
    positions = [out.index(f"{i}. {step}") for i, step in enumerate(steps, 1)]
    assert positions == sorted(positions)
    for example in (
        "mu init",
        "mu validate --ontology=policy/ --golden",
        "mu generate --input=policy/ --output=A",
        "mu test --enforcer=A --golden-suite",
        "mu deploy --target=test --enforcer=A",
        "mu audit-trail --report=trail.html",
    ):
        assert f"\n                  {example}" in out, example  # kept as written (raw epilog)


def test_a_mistyped_command_gets_did_you_mean(mu: Run) -> None:
    code, _, err = mu("genrate")
    assert code == 2 and "unknown command 'genrate'; did you mean `generate`?" in err
    code, _, err = mu("receipt", "exprt", "r.json")
    assert code == 2 and "unknown action 'exprt'; did you mean `export`?" in err
    code, _, err = mu("zzzzzz")
    assert code == 2 and "unknown command 'zzzzzz'; the choices are: " in err and "generate" in err


def test_a_mistyped_option_gets_did_you_mean(mu: Run) -> None:
    code, _, err = mu("generate", "--input=O", "--ouput=A")
    assert code == 2 and "mu generate has no option --ouput; did you mean --output?" in err
    code, _, err = mu("test", "--enforcr=A", "--golden-suite")
    assert code == 2 and "did you mean --enforcer?" in err
    code, _, err = mu("validate", "--ontology=O", "--goldn")
    assert code == 2 and "did you mean --golden?" in err
    code, _, err = mu("audit-log", "verfy")
    assert code == 2 and "did you mean `verify`?" in err
    code, _, err = mu("generate", "--input=O", "--output=A", "--zzzzzz")
    assert code == 2 and "has no option --zzzzzz; see `mu generate --help`" in err


def test_an_abbreviated_option_is_still_accepted(mu: Run, tmp_path: Path) -> None:
    code, _, err = mu("validate", "--ontology=nowhere", "--gold")
    assert code == 2 and "has no option" not in err  # argparse's unique prefix: the file is missing


def test_the_product_never_mentions_issues_or_unbuilt_commands() -> None:
    pattern = re.compile(r"\bissues? \d|not built yet|_not_built", re.IGNORECASE)
    files = [
        ROOT / "README.md",
        *sorted((ROOT / "src").rglob("*.py")),
        *sorted((ROOT / "src").rglob("*.ttl")),
    ]
    found = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in files
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert found == []


@pytest.mark.parametrize(
    ("argv", "default"),
    [
        (["decide", "--transaction=t.json", "--target=test"], 10.0),
        (["receipt", "--deployment=test"], None),  # None: the command's own 10 s
        (["deploy", "--target=test", "--enforcer=A"], 60.0),
        (["rollback", "--target=test", "--to-receipt=R"], 60.0),
    ],
)
def test_every_command_that_waits_for_a_daemon_takes_wait(argv: list[str], default: float | None) -> None:
    parser = build_parser()
    assert parser.parse_args(argv).wait == default
    assert parser.parse_args([*argv, "--wait=2.5"]).wait == 2.5


def test_wait_is_how_long_decide_and_receipt_wait_for_a_daemon(mu: Run, tmp_path: Path) -> None:
    tx = write_tx(tmp_path / "tx.json")
    code, _, err = mu("decide", "--target=test", f"--transaction={tx}", "--wait=0.2")
    assert code == 2 and "(waited 0.2 s)" in err and "raise --wait" in err
    code, _, err = mu("receipt", "--deployment=test", "--wait=0.2")
    assert code == 2 and "(waited 0.2 s)" in err and "raise --wait" in err
    code, _, err = mu("receipt", "export", "r.json", "--wait=1")
    assert code == 2 and "has no option --wait" in err
