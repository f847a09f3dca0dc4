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
"""

from __future__ import annotations

import json
import smtplib
import urllib.error
import urllib.request
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any

__all__ = [
    "DeliveryError",
    "Notifier",
    "PermanentError",
    "TransientError",
    "build_message",
    "load_config",
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


class PermanentError(DeliveryError):
    """Retrying cannot help (e.g. the server refuses the recipient with a 5xx)."""

    permanent = True


#: Headers are never folded (the idempotency key stays on one line, as receivers match it).
_POLICY = email_policy.default.clone(max_line_length=998)


def load_config(home: str | Path) -> dict[str, Any]:
    """``<home>/config.json`` as a dict (``{}`` when absent). A malformed file is a transient
    error: the operator can fix it and queued notifications are then delivered."""
    path = Path(home) / "config.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise TransientError(f"cannot read {path}: {exc}") from exc
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise TransientError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise TransientError(f"{path} must hold a JSON object")
    return doc


def build_message(payload: dict[str, Any], sender: str) -> EmailMessage:
    """The e-mail for one notification outbox payload."""
    key = str(payload["idempotency_key"])
    decision = payload.get("decision") or "DECISION"
    tx_id = payload.get("transaction_id") or f"decision {payload.get('decision_id')}"
    rule = str(payload.get("rule"))
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = sender
    msg["To"] = str(payload["recipient"])
    msg["Subject"] = f"[FinOps Fabric] {decision} {tx_id} (rule {rule})"
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = f"<{key.removeprefix('sha256:')}@finops-fabric>"
    msg["X-Fabric-Idempotency-Key"] = key
    msg["X-Fabric-Decision-Id"] = str(payload.get("decision_id"))
    msg["X-Fabric-Rule"] = rule
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
    lines += ["", "Transaction JSON:", json.dumps(payload.get("transaction"), indent=2, sort_keys=True)]
    msg.set_content("\n".join(lines) + "\n")
    return msg


def _is_loopback_url(url: str) -> bool:
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "127.0.0.1", "::1")


class Notifier:
    """Sends notification payloads; keeps one SMTP connection open across a batch."""

    def __init__(self, home: str | Path) -> None:
        self.home = Path(home)
        self._smtp: smtplib.SMTP | None = None
        self._config: dict[str, Any] = {}

    # --- SMTP ---------------------------------------------------------------------------------

    def _connect(self) -> smtplib.SMTP:
        if self._smtp is not None:
            return self._smtp
        self._config = load_config(self.home)
        cfg = self._config.get("smtp")
        if not isinstance(cfg, dict) or not cfg.get("host"):
            raise TransientError(f"no SMTP server configured in {self.home / 'config.json'}", connection=True)
        host, port = str(cfg["host"]), int(cfg.get("port", 25))
        timeout = float(cfg.get("timeout", 10))
        try:
            smtp = smtplib.SMTP(host, port, timeout=timeout)
            if cfg.get("starttls"):
                smtp.starttls()
            if cfg.get("username"):
                smtp.login(str(cfg["username"]), str(cfg.get("password") or ""))
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientError(f"cannot reach SMTP server {host}:{port}: {exc}", connection=True) from exc
        self._smtp = smtp
        return smtp

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
        smtp = self._connect()
        cfg = self._config.get("smtp") or {}
        msg = build_message(payload, str(cfg.get("from") or "fabric@localhost"))
        try:
            refused = smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            self._reset_or_drop(smtp)
            if codes and all(500 <= c < 600 for c in codes):
                raise PermanentError(f"recipient refused: {exc.recipients}") from exc
            raise TransientError(f"recipient refused for now: {exc.recipients}") from exc
        except smtplib.SMTPResponseException as exc:
            self._reset_or_drop(smtp)
            err = f"SMTP {exc.smtp_code} {exc.smtp_error!r}"
            if 500 <= exc.smtp_code < 600 and exc.smtp_code != 554:
                raise PermanentError(err) from exc
            raise TransientError(err) from exc
        except (OSError, smtplib.SMTPException) as exc:  # disconnected, timeout, refused
            self._drop()
            raise TransientError(f"SMTP delivery failed: {exc}", connection=True) from exc
        if refused:
            raise PermanentError(f"recipients refused: {refused}")

    def _reset_or_drop(self, smtp: smtplib.SMTP) -> None:
        try:
            smtp.rset()
        except (OSError, smtplib.SMTPException):
            self._drop()

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
