"""The notification message written directly (``message_bytes``) against the email package:
byte for byte on a corpus of payloads, and as received by a real SMTP server (aiosmtpd),
pipelined and not."""

from __future__ import annotations

import copy
import email
import email.policy
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from test_faults_support import decision_for, make_store, smtp_server

from finops_fabric.daemon import outbox
from finops_fabric.daemon.notifier import (
    Notifier,
    _fast_bytes,
    _headers,
    build_message,
    flatten,
    message_bytes,
)

SENDER = "fabric@localhost"
NOW = 1_790_000_000.75


def _payload(recipient: str = "finance@example.com", **changes: Any) -> dict[str, Any]:
    decision, tx = decision_for(3, [recipient])
    ((_, _, payload),) = outbox.items_for_decision(41, decision, tx)
    payload = copy.deepcopy(payload)
    for key, value in changes.items():
        if key.startswith("tx_"):
            payload["transaction"][key[3:]] = value
        else:
            payload[key] = value
    return payload


#: Payloads the direct writer must handle itself (name, payload).
PLAIN = [
    ("usual", _payload()),
    ("no transaction id", _payload(transaction_id=None)),
    ("no decision", _payload(decision=None)),
    ("punctuation in rule", _payload(rule='urn:x:(a)"b"\\c;<d>,[e]')),
    ("dot lines", _payload(fired=[{"rule": "r", "reason": "a\n.\n..b\n.end"}])),
    ("tab in reason", _payload(fired=[{"rule": "r", "reason": "a\tb"}])),
    ("integers and booleans", _payload(tx_count=12, tx_flag=True, tx_none=None, tx_neg=-3)),
    ("empty transaction", _payload(transaction={})),
    ("nested transaction", _payload(tx_lines=[{"sku": "a", "qty": 2}], tx_meta={"k": [1, "x"]})),
    ("float in transaction", _payload(tx_rate=0.1)),
    ("transaction not an object", _payload(transaction=["a", 1])),
    ("null transaction", _payload(transaction=None)),
    ("quote and backslash", _payload(tx_note='say "hi" \\ bye')),
    ("odd address", _payload(recipient="o'neil+x{1}@mail-1.example.com")),
    ("fired not dicts", _payload(fired=["x", {"rule": "r", "reason": "y"}])),
    ("non-ASCII transaction value (JSON escapes it)", _payload(tx_note="naïve ☃")),
]

#: Payloads that need the email package (written through it: the result is the same anyway).
SPECIAL = [
    ("non-ASCII transaction id", _payload(transaction_id="tx-é")),
    ("non-ASCII reason", _payload(fired=[{"rule": "r", "reason": "Überweisung über Limit"}])),
    ("non-ASCII rule", _payload(rule="https://example.com/ø#R")),
    ("encoded-word look-alike", _payload(transaction_id="=?utf-8?q?x?=")),
    ("double space", _payload(transaction_id="a  b")),
    ("trailing space", _payload(rule="r ")),
    ("long subject", _payload(transaction_id="x" * 1200)),
    ("long body line", _payload(fired=[{"rule": "r", "reason": "y" * 1200}])),
    ("control character", _payload(fired=[{"rule": "r", "reason": "a\x01b"}])),
    ("carriage return", _payload(fired=[{"rule": "r", "reason": "a\rb"}])),
    ("display name", _payload(recipient="Finance Team <finance@example.com>")),
    ("empty rule", _payload(rule="")),
]


@pytest.mark.parametrize(("name", "payload"), PLAIN, ids=[n for n, _ in PLAIN])
def test_plain_payloads_are_written_directly_and_byte_identical(name: str, payload: dict[str, Any]) -> None:
    headers, body = _headers(payload, SENDER, NOW)
    direct = _fast_bytes(headers, body)
    assert direct is not None, f"{name}: expected the direct writer to handle it"
    assert direct == flatten(build_message(payload, SENDER, now=NOW))
    assert message_bytes(payload, SENDER, now=NOW) == direct


@pytest.mark.parametrize(("name", "payload"), SPECIAL, ids=[n for n, _ in SPECIAL])
def test_other_payloads_go_through_the_email_package(name: str, payload: dict[str, Any]) -> None:
    headers, body = _headers(payload, SENDER, NOW)
    assert _fast_bytes(headers, body) is None, f"{name}: the direct writer must not handle it"
    assert message_bytes(payload, SENDER, now=NOW) == flatten(build_message(payload, SENDER, now=NOW))


def test_non_ascii_subject_is_an_encoded_word() -> None:
    data = message_bytes(_payload(transaction_id="tx-é"), SENDER, now=NOW)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.isascii() and b"Content-Transfer-Encoding: 8bit" in head
    assert "Transaction: tx-é".encode() in body
    assert b"Subject: [FinOps Fabric] REJECT =?utf-8?q?tx-=C3=A9?= (rule" in data


def test_header_injection_is_refused() -> None:
    with pytest.raises(ValueError):
        message_bytes(_payload(transaction_id="x\r\nBcc: evil@example.com"), SENDER, now=NOW)


@pytest.fixture
def notifier(tmp_path: Path) -> Iterator[Notifier]:
    n = Notifier(tmp_path)
    yield n
    n.close()


def _parsed(raw: bytes) -> email.message.Message:
    return email.message_from_bytes(raw, policy=email.policy.default)


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "classic"])
def test_server_receives_exactly_the_email_package_message(
    tmp_path: Path, notifier: Notifier, pipelining: bool
) -> None:
    payloads = [p for _, p in PLAIN + SPECIAL if p["rule"] != ""]
    with smtp_server(pipelining=pipelining) as smtp:
        make_store(tmp_path, smtp.port)
        sent: list[int] = []
        errors = notifier.send_mails(payloads, sent.append)
        assert errors == [None] * len(payloads)
        assert sent == list(range(len(payloads)))
        raws, messages = smtp.raw_messages(), smtp.messages()
    assert len(raws) == len(payloads)
    for payload, raw, (rcpts, received) in zip(payloads, raws, messages, strict=True):
        when = parsedate_to_datetime(str(received["Date"])).timestamp()
        expected = flatten(build_message(payload, SENDER, now=when))
        # the same bytes, and the same message once parsed (headers in order, body)
        assert raw.replace(b"\r\n", b"\n") == expected.replace(b"\r\n", b"\n")
        want = _parsed(expected)
        assert list(received.items()) == list(want.items())
        assert received.get_content() == want.get_content()
        assert rcpts == [want["To"].addresses[0].addr_spec]


def test_refused_recipient_mid_batch_others_go_through(tmp_path: Path, notifier: Notifier) -> None:
    payloads = [_payload(f"r{i}@example.com") for i in range(6)]
    with smtp_server(refuse={"r2@example.com", "r3@example.com"}) as smtp:
        make_store(tmp_path, smtp.port)
        sent: list[int] = []
        errors = notifier.send_mails(payloads, sent.append)
        got = [rcpts[0] for rcpts, _ in smtp.messages()]
    assert sent == [0, 1, 4, 5]
    assert got == ["r0@example.com", "r1@example.com", "r4@example.com", "r5@example.com"]
    assert [type(e).__name__ for e in errors] == ["NoneType"] * 2 + ["PermanentError"] * 2 + ["NoneType"] * 2
    assert "550" in str(errors[2])


def test_session_is_kept_and_reopened_after_the_server_restarts(tmp_path: Path, notifier: Notifier) -> None:
    with smtp_server() as smtp:
        make_store(tmp_path, smtp.port)
        assert notifier.send_mails([_payload("a@example.com")]) == [None]
        session = notifier._smtp
        assert notifier.send_mails([_payload("b@example.com")]) == [None]
        assert notifier._smtp is session  # one session across batches
        smtp.stop()
        smtp.start()  # the old session is dead; nothing was sent on it since
        assert notifier.send_mails([_payload("c@example.com"), _payload("d@example.com")]) == [None, None]
        assert notifier._smtp is not session
        got = [rcpts[0] for rcpts, _ in smtp.messages()]
    assert got == ["a@example.com", "b@example.com", "c@example.com", "d@example.com"]


def test_connection_refused_fails_every_message_as_a_connection_error(
    tmp_path: Path, notifier: Notifier
) -> None:
    from test_faults_support import free_port

    make_store(tmp_path, free_port())
    errors = notifier.send_mails([_payload("a@example.com"), _payload("b@example.com")])
    assert all(e is not None and e.connection and not e.permanent for e in errors)


def test_stop_leaves_the_rest_untried(tmp_path: Path, notifier: Notifier) -> None:
    with smtp_server() as smtp:
        make_store(tmp_path, smtp.port)
        sent: list[int] = []
        errors = notifier.send_mails(
            [_payload(f"r{i}@example.com") for i in range(6)], sent.append, stop=lambda: len(sent) >= 2
        )
        got = [rcpts[0] for rcpts, _ in smtp.messages()]
    # the message begun when stop() turned true is finished; none is begun after it
    assert 2 <= len(sent) <= 3 and sent == list(range(len(sent)))
    assert got == [f"r{i}@example.com" for i in sent]
    assert errors[: len(sent)] == [None] * len(sent)
    assert {type(e).__name__ for e in errors[len(sent) :]} == {"NotTried"}
