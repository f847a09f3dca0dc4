"""How `mu` explains itself: the workflow under ``mu --help``, and "did you mean" for a mistyped
command, option or choice (difflib over what the parser knows)."""

from __future__ import annotations

import argparse
import difflib
import re
from collections.abc import Iterator, Sequence
from typing import Any

WORKFLOW = """\
the workflow, with an example of each step:
  1. init       the store and an operator signing key
                  mu init
  2. validate   O against Σ and the invariants; --golden also runs the golden cases on a
                throwaway A (a dry run: nothing is written to the store)
                  mu validate --ontology=policy/ --golden
  3. generate   every gate, the golden cases, a signed receipt, and A
                  mu generate --input=policy/ --output=A --receipt=receipt.json
  4. test       the golden cases (or one transaction) against A
                  mu test --enforcer=A --golden-suite
  5. deploy     A to an environment's daemon (started with `mu daemon --env=test`)
                  mu deploy --target=test --enforcer=A
  6. audit      every receipt verified, each change of O, an HTML report for auditors
                  mu audit-trail --report=trail.html

exit codes: 0 done and every check held; 1 a check said no; 2 bad invocation or input.
`mu COMMAND --help` describes a command and its options.
"""

# `mu --help` lists these first, in the order of the workflow; every other command follows by name.
FIRST = ("init", "validate", "generate", "test", "decide", "deploy", "audit-trail")

# How close a known name must be to be offered (difflib's ratio, 0..1).
CUTOFF = 0.6
_INVALID_CHOICE = re.compile(r"argument (\S+): invalid choice: '?(.*?)'? \(choose from (.*)\)$")


def closest(word: str, known: Sequence[str]) -> str | None:
    found = difflib.get_close_matches(word, list(known), n=1, cutoff=CUTOFF)
    return found[0] if found else None


def subparsers(
    parser: argparse.ArgumentParser,
) -> Iterator[argparse._SubParsersAction[argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield action


def walk(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every parser below it (commands, and actions such as ``receipt export``)."""
    yield parser
    for action in subparsers(parser):
        for child in dict.fromkeys(action.choices.values()):
            yield from walk(child)


def in_order(sub: argparse._SubParsersAction[Any]) -> None:
    """List the commands in ``mu --help`` as :data:`FIRST` says, then by name."""

    def key(action: argparse.Action) -> tuple[int, str]:
        name = action.dest
        return (FIRST.index(name), "") if name in FIRST else (len(FIRST), name)

    sub._choices_actions.sort(key=key)


def invalid_choice(message: str) -> str | None:
    """argparse's "invalid choice" message in plain words, with the nearest valid choice."""
    m = _INVALID_CHOICE.search(message)
    if m is None:
        return None
    argument, value = m.group(1), m.group(2)
    choices = [c.strip().strip("'") for c in m.group(3).split(",")]
    meant = closest(value, choices)
    advice = f"; did you mean `{meant}`?" if meant else f"; the choices are: {', '.join(choices)}"
    if argument.startswith("-"):
        return f"{argument}={value} is not a valid choice{advice}"
    what = {"COMMAND": "command", "ACTION": "action"}.get(argument, argument)
    return f"unknown {what} {value!r}{advice}"


def unknown_options(root: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """For each option in ``argv`` that the command it is given to does not have (an option
    belongs to the command or action named before it): the option, and the nearest one that
    command does have (``--ouput=A`` → ``--output``)."""
    parser, out = root, []
    for word in argv:
        if word == "--":
            break
        child = next((a.choices[word] for a in subparsers(parser) if word in a.choices), None)
        if child is not None:
            parser = child
            continue
        if not word.startswith("-") or word == "-" or re.match(r"-\d", word):
            continue
        known = sorted({o for a in parser._actions for o in a.option_strings})
        name = word.split("=", 1)[0]
        if name in known or (name.startswith("--") and any(k.startswith(name) for k in known)):
            continue
        meant = closest(name, known)
        advice = f"did you mean {meant}?" if meant else f"see `{parser.prog} --help`"
        out.append(f"{parser.prog} has no option {name}; {advice}")
    return out
