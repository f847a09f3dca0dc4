"""Notification delivery: e-mail over SMTP (``smtplib``), optionally a JSON webhook as well.

Configuration, ``<store>/config.json``::

    {"smtp": {"host": "127.0.0.1", "port": 2525, "from": "fabric@localhost",
              "timeout": 10, "starttls": false, "username": null, "password": null},
     "webhook": {"url": "http://127.0.0.1:8080/hook", "timeout": 5}}

The file is read again whenever a connection is (re)opened, so fixing it needs no restart.
Every message carries the outbox idempotency key twice: ``X-Fabric-Idempotency-Key`` (the
``sha256:<hex>`` key) and ``Message-ID`` (``<hex@finops-fabric>``), so a receiving system can
drop a copy. Errors are classified: :class:`TransientError` (server down, timeout, 4xx) is
retried with back-off, :class:`PermanentError` (5xx, bad configuration of a recipient) dead-letters
the item.

One SMTP session stays open across messages and batches (it is reopened after an error).
:meth:`Notifier.send_mails` sends a batch: when the server offers PIPELINING (RFC 2920) each
message costs one round trip (its data and end-of-data go out together with the next
message's MAIL, RCPT and DATA), else the classic four. The server's answer to each message is
reported (``on_sent``) before the next message's data is sent.

:func:`message_bytes` writes the message itself; for the usual notification (ASCII text, plain
addresses) it writes the bytes directly, exactly the bytes ``build_message`` flattened by
``smtplib`` would give (the tests compare them byte for byte); anything else (non-ASCII text,
which needs RFC 2047 encoded-words or an 8bit body, display names, very long lines) goes
through ``email.message.EmailMessage`` as before.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import smtplib
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from email import policy as email_policy
from email.generator import BytesGenerator
from email.message import EmailMessage
from email.utils import format_datetime
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import Any, cast

__all__ = [
    "DeliveryError",
    "NotTried",
    "Notifier",
    "PermanentError",
    "TransientError",
    "build_message",
    "load_config",
    "message_bytes",
]


class DeliveryError(Exception):
    """A notification could not be delivered. ``connection`` is True when the transport itself
    is unavailable (the rest of a batch would fail the same way)."""

    permanent = False

    def __init__(self, message: str, *, connection: bool = False) -> None:
        super().__init__(message)
        self.connection = connection


class TransientError(DeliveryError):
    """Worth retrying later."""


class NotTried(TransientError):
    """Not sent: the batch was cut short (the worker is stopping)."""


class PermanentError(DeliveryError):
    """Retrying cannot help (e.g. the server refuses the recipient with a 5xx)."""

    permanent = True


#: Headers are never folded (the idempotency key stays on one line, as receivers match it).
_POLICY = email_policy.default.clone(max_line_length=998)


def load_config(home: str | Path) -> dict[str, Any]:
    """``<home>/config.json`` as a dict (``{}`` when absent). A malformed file is a transient
    error of the transport (``connection=True``: no message can go out until the operator fixes
    it; then queued notifications are delivered)."""
    path = Path(home) / "config.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise TransientError(f"cannot read {path}: {exc}", connection=True) from exc
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise TransientError(f"{path} is not valid JSON: {exc}", connection=True) from exc
    if not isinstance(doc, dict):
        raise TransientError(f"{path} must hold a JSON object", connection=True)
    return doc


_last_date: tuple[int, str] = (-1, "")


def _date(now: float | None) -> str:
    """The Date header as ``build_message`` writes it (RFC 5322, ``+0000``)."""
    global _last_date
    t = int(time.time() if now is None else now)
    if _last_date[0] != t:
        _last_date = (t, format_datetime(dt.datetime.fromtimestamp(t, dt.UTC)))
    return _last_date[1]


_encode_str = encode_basestring_ascii  # what json.dumps writes a string with (ensure_ascii)


def _json_scalar(value: object) -> str | None:
    """``json.dumps(value)`` for a string, an int, a bool or None; None for anything else."""
    t = type(value)
    if t is str:
        return _encode_str(cast(str, value))
    if t is int:
        return int.__repr__(cast(int, value))
    if value is None:
        return "null"
    if t is bool:
        return "true" if value else "false"
    return None


def _transaction_json(tx: object) -> str:
    """``json.dumps(tx, indent=2, sort_keys=True)``; a flat object of strings, integers, booleans
    and nulls (the usual transaction) is written directly, as the stdlib writes it."""
    if type(tx) is dict and tx and all(type(k) is str for k in tx):
        items = []
        for key in sorted(tx):
            text = _json_scalar(tx[key])
            if text is None:
                break
            items.append(f"  {_encode_str(key)}: {text}")
        else:
            return "{\n" + ",\n".join(items) + "\n}"
    return json.dumps(tx, indent=2, sort_keys=True)


def _body_text(payload: dict[str, Any], decision: object, tx_id: object, rule: str) -> str:
    lines = [
        f"Decision: {decision}",
        f"Transaction: {tx_id}",
        f"Notification rule: {rule}",
        f"Enforcer: {payload.get('enforcer_hash')}",
        "",
    ]
    for fired in payload.get("fired") or []:
        if isinstance(fired, dict):
            lines.append(f"Fired: {fired.get('rule')}: {fired.get('reason')}")
    lines += ["", "Transaction JSON:", _transaction_json(payload.get("transaction"))]
    return "\n".join(lines) + "\n"


def _headers(payload: dict[str, Any], sender: str, now: float | None) -> tuple[list[tuple[str, str]], str]:
    """The header fields (name, unfolded value) of one notification, in order, and its body text."""
    key = str(payload["idempotency_key"])
    decision = payload.get("decision") or "DECISION"
    tx_id = payload.get("transaction_id") or f"decision {payload.get('decision_id')}"
    rule = str(payload.get("rule"))
    headers = [
        ("From", sender),
        ("To", str(payload["recipient"])),
        ("Subject", f"[FinOps Fabric] {decision} {tx_id} (rule {rule})"),
        ("Date", _date(now)),
        ("Message-ID", f"<{key.removeprefix('sha256:')}@finops-fabric>"),
        ("X-Fabric-Idempotency-Key", key),
        ("X-Fabric-Decision-Id", str(payload.get("decision_id"))),
        ("X-Fabric-Rule", rule),
    ]
    return headers, _body_text(payload, decision, tx_id, rule)


def build_message(payload: dict[str, Any], sender: str, *, now: float | None = None) -> EmailMessage:
    """The e-mail for one notification outbox payload (``now``: the Date, default the clock)."""
    headers, body = _headers(payload, sender, now)
    msg = EmailMessage(policy=_POLICY)
    for name, value in headers:
        msg[name] = value
    msg.set_content(body)
    return msg


_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
#: A bare addr-spec (dot-atom local part, host name): the header and the envelope address agree.
_PLAIN_ADDRESS = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@{_LABEL}(?:\.{_LABEL})*")
_PLAIN_KEY = re.compile(r"sha256:[0-9a-f]{64}")
#: Body text that ``set_content`` sends as 7bit unchanged: printable ASCII, tabs, newlines, no
#: line over 998 characters.
_PLAIN_BODY = re.compile(r"(?:[\t\x20-\x7e]{0,998}\n)*")
_MAX_FIELD = 900  # well under the 998 octets where the email package would fold a line
_TAIL = (
    b'Content-Type: text/plain; charset="utf-8"\r\n'
    b"Content-Transfer-Encoding: 7bit\r\nMIME-Version: 1.0\r\n\r\n"
)


def _plain_value(value: str) -> bool:
    """Printable ASCII words separated by single spaces, no encoded-word look-alike, short: an
    unstructured header value that the email package writes back unchanged."""
    return (
        0 < len(value) <= _MAX_FIELD
        and value.isascii()
        and value.isprintable()
        and value[0] != " "
        and value[-1] != " "
        and "  " not in value
        and "=?" not in value
    )


def _fast_bytes(headers: list[tuple[str, str]], body: str) -> bytes | None:
    """The wire bytes of a plain notification, or None when it needs the email package."""
    if not all(_plain_value(value) for _, value in headers):
        return None
    if not (
        _PLAIN_ADDRESS.fullmatch(headers[0][1])
        and _PLAIN_ADDRESS.fullmatch(headers[1][1])
        and _PLAIN_KEY.fullmatch(headers[5][1])
        and _PLAIN_BODY.fullmatch(body)
    ):
        return None
    head = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return head.encode("ascii") + _TAIL + body.replace("\n", "\r\n").encode("ascii")


def flatten(msg: EmailMessage) -> bytes:
    """``msg`` as ``smtplib.SMTP.send_message`` puts it on the wire for ASCII addresses (CRLF line
    ends, before dot-stuffing)."""
    buf = io.BytesIO()
    BytesGenerator(buf, policy=msg.policy).flatten(msg, linesep="\r\n")
    return buf.getvalue()


def message_bytes(payload: dict[str, Any], sender: str, *, now: float | None = None) -> bytes:
    """The message for one notification payload as bytes (CRLF line ends, not dot-stuffed):
    exactly ``flatten(build_message(payload, sender, now=now))``, written directly when the
    notification is plain ASCII (the usual case)."""
    return _message(payload, sender, now)[0]


def _message(payload: dict[str, Any], sender: str, now: float | None) -> tuple[bytes, bool]:
    """:func:`message_bytes`, and whether it was written directly (then every line ends in CRLF)."""
    headers, body = _headers(payload, sender, now)
    fast = _fast_bytes(headers, body)
    if fast is not None:
        return fast, True
    return flatten(build_message(payload, sender, now=now)), False


def _is_loopback_url(url: str) -> bool:
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "127.0.0.1", "::1")


_UNTRIED = object()


class _Stale(Exception):
    """A reused session failed before any message data went out on it: reopen and try again."""


class _Broken(Exception):
    """The session is unusable (disconnected, timed out, 421, a reply that breaks the protocol)."""


def _classify(code: int, text: bytes, what: str) -> DeliveryError:
    """The error for a refused MAIL, DATA or end of data (as ``send_mail`` always classified
    ``SMTPResponseException``): 5xx is permanent except 554, which may be a passing policy."""
    err = f"SMTP {code} {text!r} ({what})"
    if 500 <= code < 600 and code != 554:
        return PermanentError(err)
    return TransientError(err)


def _wire(data: bytes, *, crlf: bool) -> bytes:
    """``data`` as the DATA phase sends it: CRLF line ends (``crlf``: it has them already),
    dot-stuffed, ended by the lone dot."""
    if not crlf:
        data = re.sub(rb"(?:\r\n|\n|\r(?!\n))", b"\r\n", data)
    if data.startswith(b"."):
        data = b"." + data
    data = data.replace(b"\r\n.", b"\r\n..")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


class Notifier:
    """Sends notification payloads; keeps one SMTP session open across messages and batches
    (dropped on any error, reopened on the next send)."""

    def __init__(self, home: str | Path) -> None:
        self.home = Path(home)
        self._smtp: smtplib.SMTP | None = None
        self._config: dict[str, Any] = {}

    # --- SMTP ---------------------------------------------------------------------------------

    def connect(self) -> None:
        """Open the SMTP session if none is open (re-reading ``config.json``); raises
        :class:`TransientError` with ``connection=True`` when that fails. A cheap probe of a
        server that was down."""
        self._connect()

    def _connect(self) -> smtplib.SMTP:
        if self._smtp is not None:
            return self._smtp
        self._config = load_config(self.home)
        cfg = self._config.get("smtp")
        if not isinstance(cfg, dict) or not cfg.get("host"):
            raise TransientError(f"no SMTP server configured in {self.home / 'config.json'}", connection=True)
        host, port = str(cfg["host"]), int(cfg.get("port", 25))
        timeout = float(cfg.get("timeout", 10))
        smtp: smtplib.SMTP | None = None
        try:
            smtp = smtplib.SMTP(host, port, timeout=timeout)
            if cfg.get("starttls"):
                smtp.starttls()
            if cfg.get("username"):
                smtp.login(str(cfg["username"]), str(cfg.get("password") or ""))
            smtp.ehlo_or_helo_if_needed()
        except (OSError, smtplib.SMTPException) as exc:
            if smtp is not None:
                smtp.close()
            raise TransientError(f"cannot reach SMTP server {host}:{port}: {exc}", connection=True) from exc
        self._smtp = smtp
        return smtp

    def _sender(self) -> str:
        cfg = self._config.get("smtp") or {}
        return str(cfg.get("from") or "fabric@localhost")

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()

    def send_mail(self, payload: dict[str, Any]) -> None:
        """Send one notification's mail; raises a :class:`DeliveryError` when it was not accepted."""
        (err,) = self.send_mails([payload])
        if err is not None:
            raise err

    def send_mails(
        self,
        payloads: Sequence[dict[str, Any]],
        on_sent: Callable[[int], None] | None = None,
        *,
        now: float | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> list[DeliveryError | None]:
        """Send one message per payload over the open session (opened if needed); per payload,
        None when the server accepted it, else the error.

        ``on_sent(i)`` is called as soon as the server has accepted message ``i`` (its 250 after
        the data) and before the data of any later message is sent, so a caller that records the
        delivery there has at most one accepted-but-unrecorded message at any time. An exception
        from ``on_sent`` drops the session and propagates.

        After a connection error the message in hand and every later one get that error
        (``connection=True``) without being tried. A session that went stale while idle is
        reopened once, if no message data had been sent on it yet. When ``stop()`` turns true,
        the messages not yet begun are left out (:class:`NotTried`)."""
        results: list[DeliveryError | object | None] = [_UNTRIED] * len(payloads)
        while True:
            reused = self._smtp is not None
            try:
                smtp = self._connect()
            except DeliveryError as exc:
                return [exc] * len(payloads)
            try:
                self._session(smtp, payloads, results, on_sent, now, stop, stale_ok=reused)
            except _Stale:
                self._drop()
                continue
            except _Broken as exc:
                self._drop()
                err = TransientError(f"SMTP delivery failed: {exc.__cause__ or exc}", connection=True)
                for i, r in enumerate(results):
                    if r is _UNTRIED:
                        results[i] = err
            except BaseException:
                self._drop()
                raise
            break
        return [r if isinstance(r, DeliveryError) else None for r in results]

    def _session(
        self,
        smtp: smtplib.SMTP,
        payloads: Sequence[dict[str, Any]],
        results: list[DeliveryError | object | None],
        on_sent: Callable[[int], None] | None,
        now: float | None,
        stop: Callable[[], bool] | None,
        *,
        stale_ok: bool,
    ) -> None:
        """One pass over the untried payloads (``results[i] is _UNTRIED``) on ``smtp``; raises
        :class:`_Stale` (only when ``stale_ok``: a reused session) if it fails before any message
        data was sent, else :class:`_Broken`."""
        sender = self._sender()
        pipelining = smtp.has_extn("pipelining")
        size = smtp.has_extn("size")
        staged = b""  # data + end of data of message ``staged_i``, sent with the next commands
        staged_i = -1
        rset = False
        data_sent = False

        def accepted(i: int) -> None:
            results[i] = None
            if on_sent is not None:
                on_sent(i)

        def reply() -> tuple[int, bytes]:
            try:
                code, text = smtp.getreply()
            except (OSError, smtplib.SMTPException) as exc:
                if stale_ok and not data_sent:
                    raise _Stale from exc
                raise _Broken(str(exc)) from exc
            if code == 421:  # the server is closing the session
                raise _Broken(f"SMTP 421 {text!r}")
            return code, text

        def send(data: bytes) -> None:
            try:
                smtp.send(data)
            except (OSError, smtplib.SMTPException) as exc:
                if stale_ok and not data_sent:
                    raise _Stale from exc
                raise _Broken(str(exc)) from exc

        def end_of_data(i: int) -> None:
            code, text = reply()
            if code == 250:
                accepted(i)
            else:
                results[i] = _classify(code, text, "end of data")

        for i, payload in enumerate(payloads):
            if results[i] is not _UNTRIED:
                continue
            if stop is not None and stop():
                for j in range(i, len(payloads)):
                    if results[j] is _UNTRIED:
                        results[j] = NotTried("not sent: stopping")
                break
            try:
                recipient = str(payload["recipient"])
                data, crlf = _message(payload, sender, now)
            except Exception as exc:  # a malformed payload (or a bug): this item only, dead-lettered
                results[i] = PermanentError(f"malformed notification payload: {exc!r}")
                continue
            plain = bool(_PLAIN_ADDRESS.fullmatch(sender) and _PLAIN_ADDRESS.fullmatch(recipient))
            if not (pipelining and plain):
                if staged_i >= 0:
                    send(staged)
                    data_sent = True
                    end_of_data(staged_i)
                    staged, staged_i = b"", -1
                if rset:
                    self._rset(smtp)
                    rset = False
                data_sent = True  # smtplib sends the message itself: no retry on a stale session
                results[i] = self._send_classic(smtp, payload, sender, recipient, data, plain, now)
                if results[i] is None and on_sent is not None:
                    on_sent(i)
                continue
            mail = f"MAIL FROM:<{sender}>" + (f" SIZE={len(data)}" if size else "") + "\r\n"
            commands = ("RSET\r\n" if rset else "") + mail + f"RCPT TO:<{recipient}>\r\nDATA\r\n"
            send(staged + commands.encode("ascii"))
            if staged_i >= 0:
                end_of_data(staged_i)
                staged, staged_i = b"", -1
            if rset:
                code, text = reply()
                if code != 250:
                    raise _Broken(f"RSET answered {code} {text!r}")
                rset = False
            m, r, d = reply(), reply(), reply()
            if d[0] == 354:
                if m[0] != 250 or r[0] not in (250, 251):  # DATA must not succeed then
                    raise _Broken(f"DATA accepted after MAIL {m[0]} / RCPT {r[0]}")
                staged, staged_i = _wire(data, crlf=crlf), i
                data_sent = True
                continue
            rset = True
            if m[0] != 250:
                results[i] = _classify(m[0], m[1], "MAIL FROM")
            elif r[0] not in (250, 251):
                err = f"recipient refused: {{{recipient!r}: ({r[0]}, {r[1]!r})}}"
                results[i] = PermanentError(err) if 500 <= r[0] < 600 else TransientError(err)
            else:
                results[i] = _classify(d[0], d[1], "DATA")
        if staged_i >= 0:
            send(staged)
            end_of_data(staged_i)

    def _rset(self, smtp: smtplib.SMTP) -> None:
        try:
            code, text = smtp.rset()
        except (OSError, smtplib.SMTPException) as exc:
            raise _Broken(str(exc)) from exc
        if code != 250:
            raise _Broken(f"RSET answered {code} {text!r}")

    def _send_classic(
        self,
        smtp: smtplib.SMTP,
        payload: dict[str, Any],
        sender: str,
        recipient: str,
        data: bytes,
        plain: bool,
        now: float | None,
    ) -> DeliveryError | None:
        """One message without pipelining, through smtplib (``send_message`` when an address is
        not a bare addr-spec, so the envelope and SMTPUTF8 are worked out as before)."""
        try:
            if plain:
                refused = smtp.sendmail(sender, [recipient], data)
            else:
                refused = smtp.send_message(build_message(payload, sender, now=now))
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            self._rset(smtp)
            if codes and all(500 <= c < 600 for c in codes):
                return PermanentError(f"recipient refused: {exc.recipients}")
            return TransientError(f"recipient refused for now: {exc.recipients}")
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code == 421:
                raise _Broken(f"SMTP 421 {exc.smtp_error!r}") from exc
            self._rset(smtp)
            err = f"SMTP {exc.smtp_code} {exc.smtp_error!r}"
            if 500 <= exc.smtp_code < 600 and exc.smtp_code != 554:
                return PermanentError(err)
            return TransientError(err)
        except (KeyError, TypeError, ValueError) as exc:
            return PermanentError(f"malformed notification payload: {exc!r}")
        except (OSError, smtplib.SMTPException) as exc:  # disconnected, timeout, refused
            raise _Broken(str(exc)) from exc
        if refused:
            return PermanentError(f"recipients refused: {refused}")
        return None

    # --- webhook ------------------------------------------------------------------------------

    def webhook_configured(self) -> bool:
        hook = self._config.get("webhook")
        return isinstance(hook, dict) and bool(hook.get("url"))

    def post_webhook(self, payload: dict[str, Any]) -> None:
        hook = self._config.get("webhook")
        if not isinstance(hook, dict) or not hook.get("url"):
            return
        url = str(hook["url"])
        if not url.startswith(("http://", "https://")):
            raise PermanentError(f"webhook url must be http(s): {url}")
        if hook.get("loopback_only", False) and not _is_loopback_url(url):
            raise PermanentError(f"webhook url is not on loopback: {url}")
        body = json.dumps(payload, sort_keys=True).encode("utf-8")
        req = urllib.request.Request(  # noqa: S310 - scheme checked above
            url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": str(payload["idempotency_key"]),
                "X-Fabric-Idempotency-Key": str(payload["idempotency_key"]),
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=float(hook.get("timeout", 5))) as resp:  # noqa: S310
                resp.read()
        except urllib.error.HTTPError as exc:
            if 400 <= exc.code < 500 and exc.code not in (408, 429):
                raise PermanentError(f"webhook {url} answered {exc.code}") from exc
            raise TransientError(f"webhook {url} answered {exc.code}") from exc
        except (TimeoutError, urllib.error.URLError, OSError) as exc:
            raise TransientError(f"webhook {url} unreachable: {exc}", connection=True) from exc

    # --- one notification ---------------------------------------------------------------------

    def deliver(self, payload: dict[str, Any]) -> None:
        """Send one notification (mail, then the webhook if configured). Raises a
        :class:`DeliveryError` on failure."""
        try:
            self.send_mail(payload)
            self.post_webhook(payload)
        except DeliveryError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise PermanentError(f"malformed notification payload: {exc!r}") from exc
