"""A local SMTP server that keeps every message it receives, with an inbox page and a JSON API.

It plays the part of Mailpit/MailHog (Go binaries we cannot install here) for development and
tests: nothing it receives is relayed, so no real person can be mailed by mistake.

Run it with ``python -m dev.mail_catcher`` or, in tests, in-process::

    catcher = MailCatcher("127.0.0.1", free_port(), free_port())  # dev.ports.free_port
    catcher.start()
    ...  # send mail to catcher.smtp_port, read catcher.messages or catcher.base_url + "/api/..."
    catcher.stop()

HTTP API (JSON unless noted):

- ``GET /api/messages`` lists summaries, newest first.
- ``GET /api/messages/wait?count=N&timeout=S`` blocks until at least N messages are stored (or S
  seconds pass, at most 60) and then lists them like ``GET /api/messages``.
- ``GET /api/messages/<id>`` is the summary plus ``text``, ``html`` and ``headers``.
- ``GET /api/messages/<id>/raw`` is the raw source as text/plain.
- ``DELETE /api/messages`` clears the inbox.
- ``GET``/``PUT /api/faults`` reads/sets ``{"reply": "451 4.3.0 try later", "stage": "data"}``:
  while ``reply`` is set, every DATA (or, with ``"stage": "rcpt"``, every RCPT) gets that reply
  instead of being accepted. With ``"stage": "quit"`` the mail is accepted as usual and the
  QUIT that follows gets the reply instead of 221 (a relay that takes the mail, then misbehaves).
  ``{"reply": null}`` goes back to normal.
- ``GET /`` is the HTML inbox and ``GET /messages/<id>`` one message.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import itertools
import logging
import os
import re
import threading
from collections import deque
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from email.message import EmailMessage, MIMEPart
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from flask import (
    Flask,
    Response,
    abort,
    jsonify,
    redirect,
    render_template_string,
    request,
    url_for,
)
from jinja2 import DictLoader
from werkzeug.serving import BaseWSGIServer, make_server

log = logging.getLogger(__name__)

MAX_MESSAGES = 1000
DATA_SIZE_LIMIT = 32 * 1024 * 1024
MAX_WAIT_SECONDS = 60.0
FAULT_STAGES = ("data", "rcpt", "quit")
# One line, 4xx/5xx only: a CR/LF would let a caller inject extra SMTP replies, and a 2xx/3xx
# "fault" would confuse the client about whether the mail was taken.
FAULT_REPLY = re.compile(r"[45][0-9]{2}(?: [\x20-\x7e]*)?")
ACCEPTED = "250 Message accepted for delivery"
GOODBYE = "221 Bye"


@dataclass(frozen=True)
class CapturedMessage:
    id: int
    envelope_from: str
    rcpt_tos: tuple[str, ...]
    from_header: str | None
    to_header: str | None
    subject: str | None
    date: str | None
    text: str | None
    html: str | None
    headers: tuple[tuple[str, str], ...]
    raw: bytes
    received_at: datetime

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            # The header is what a person sees; fall back to the envelope for bare messages.
            "from": self.from_header or self.envelope_from,
            # Envelope recipients: who the mail was really delivered to, Bcc included.
            "to": list(self.rcpt_tos),
            "to_header": self.to_header,
            "envelope_from": self.envelope_from,
            "subject": self.subject,
            "date": self.date,
            "received_at": self.received_at.isoformat(),
        }

    def detail(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "text": self.text,
            "html": self.html,
            "headers": [list(pair) for pair in self.headers],
        }

    @property
    def raw_text(self) -> str:
        return self.raw.decode("utf-8", errors="replace")


def _clean(value: str) -> str:
    # The bytes parser keeps undecodable bytes as lone surrogates, which JSON and HTML can't carry.
    return value.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")


def _decode_header(name: str, raw_value: str) -> str:
    try:
        return _clean(str(email.policy.default.header_fetch_parse(name, raw_value)))
    except Exception:  # the stdlib header parser has crash bugs on some malformed input
        return _clean(raw_value)


def _first(headers: tuple[tuple[str, str], ...], name: str) -> str | None:
    wanted = name.lower()
    return next((value for key, value in headers if key.lower() == wanted), None)


def _part_text(part: MIMEPart) -> str:
    try:
        text = str(part.get_content())
    except LookupError:  # unknown charset: show the bytes as UTF-8 rather than nothing
        payload = part.get_payload(decode=True)
        text = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else ""
    # SMTP carries CRLF line ends; give back the newlines the sender composed with.
    return text.replace("\r\n", "\n")


def _body(msg: EmailMessage, subtype: str) -> str | None:
    try:
        part = msg.get_body(preferencelist=(subtype,))
        return None if part is None else _clean(_part_text(part))
    except Exception:  # a catcher must store broken mail, not reject it
        log.warning("could not extract the text/%s part", subtype, exc_info=True)
        return None


def parse_message(envelope_from: str, rcpt_tos: list[str], raw: bytes) -> CapturedMessage:
    """Parse raw mail into a CapturedMessage; its id is 0 until the store assigns one."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)  # policy.default always builds EmailMessage
    headers = tuple((name, _decode_header(name, value)) for name, value in msg.raw_items())
    return CapturedMessage(
        id=0,
        envelope_from=envelope_from,
        rcpt_tos=tuple(rcpt_tos),
        from_header=_first(headers, "From"),
        to_header=_first(headers, "To"),
        subject=_first(headers, "Subject"),
        date=_first(headers, "Date"),
        text=_body(msg, "plain"),
        html=_body(msg, "html"),
        headers=headers,
        raw=raw,
        received_at=datetime.now(UTC),
    )


class MessageStore:
    """Thread-safe in-memory inbox; the oldest messages are dropped past `limit` (like Mailpit)."""

    def __init__(self, limit: int = MAX_MESSAGES) -> None:
        self._messages: deque[CapturedMessage] = deque(maxlen=limit)
        self._ids = itertools.count(1)
        # One condition guards the deque and wakes `wait_for` callers on every change.
        self._changed = threading.Condition()

    def add(self, message: CapturedMessage) -> CapturedMessage:
        with self._changed:
            stored = replace(message, id=next(self._ids))
            self._messages.append(stored)
            self._changed.notify_all()
        return stored

    def all(self) -> list[CapturedMessage]:
        """Messages oldest first."""
        with self._changed:
            return list(self._messages)

    def get(self, message_id: int) -> CapturedMessage | None:
        with self._changed:
            return next((m for m in self._messages if m.id == message_id), None)

    def clear(self) -> None:
        with self._changed:
            self._messages.clear()
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float) -> list[CapturedMessage]:
        with self._changed:
            self._changed.wait_for(lambda: len(self._messages) >= count, timeout)
            return list(self._messages)


@dataclass(frozen=True)
class Fault:
    reply: str | None = None
    stage: str = "data"


class FaultSwitch:
    """The SMTP reply to inject instead of accepting mail, set over HTTP by tests."""

    def __init__(self) -> None:
        # Fault is immutable and swapping one reference is atomic, so readers need no lock.
        self.current = Fault()

    def reply_for(self, stage: str) -> str | None:
        fault = self.current
        return fault.reply if fault.stage == stage else None


class CatchingHandler:
    """aiosmtpd handler: accept every recipient and store every message, unless a fault is set."""

    def __init__(self, store: MessageStore, faults: FaultSwitch) -> None:
        self._store = store
        self._faults = faults

    # aiosmtpd finds its hooks by these names.
    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if fault := self._faults.reply_for("rcpt"):
            return fault
        # Defining the hook means aiosmtpd no longer records the recipient itself.
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if fault := self._faults.reply_for("data"):
            return fault
        raw = envelope.original_content or b""
        stored = self._store.add(parse_message(envelope.mail_from or "", envelope.rcpt_tos, raw))
        log.info("stored message %d: %r to %s", stored.id, stored.subject, stored.rcpt_tos)
        return ACCEPTED

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return self._faults.reply_for("quit") or GOODBYE


# --- HTTP --------------------------------------------------------------------------------------

# Mail HTML is shown in a sandboxed srcdoc iframe, which inherits this policy: no script anywhere,
# inline styles and remote images allowed so mail still looks like mail.
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src * data:; "
    "form-action 'self'; base-uri 'none'"
)

LAYOUT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}Mail catcher{% endblock %}</title>
<style>
 *{box-sizing:border-box}
 body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d2430;
      background:#f4f6f9}
 header{background:#24324a;color:#fff;padding:.7rem 1rem;display:flex;align-items:center;
        justify-content:space-between;gap:1rem;flex-wrap:wrap}
 header a{color:#fff;text-decoration:none;font-weight:600}
 main{max-width:60rem;margin:0 auto;padding:1rem}
 .muted{color:#687386;font-size:.88rem}
 ul.inbox{list-style:none;margin:0;padding:0;background:#fff;border-radius:8px;
          box-shadow:0 1px 3px #0002}
 ul.inbox li{border-bottom:1px solid #e4e8ee}
 ul.inbox li:last-child{border-bottom:0}
 ul.inbox a{display:block;padding:.7rem 1rem;color:inherit;text-decoration:none}
 ul.inbox a:hover{background:#eef3fb}
 .subject{font-weight:600;overflow-wrap:anywhere}
 .meta{display:flex;flex-wrap:wrap;justify-content:space-between;gap:.2rem 1rem}
 .card{background:#fff;border-radius:8px;box-shadow:0 1px 3px #0002;padding:1rem}
 dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem .8rem;margin:0}
 dt{color:#687386} dd{margin:0;overflow-wrap:anywhere}
 nav.tabs{display:flex;flex-wrap:wrap;gap:.3rem;margin:1rem 0 .5rem}
 nav.tabs a{padding:.35rem .8rem;border-radius:6px;background:#e4e8ee;color:inherit;
            text-decoration:none}
 nav.tabs a.active{background:#24324a;color:#fff}
 pre{white-space:pre-wrap;overflow-wrap:anywhere;margin:0;font-size:.85rem}
 iframe{width:100%;height:70vh;border:0;background:#fff}
 button{font:inherit;padding:.3rem .8rem;border-radius:6px;border:0;background:#c0392b;
        color:#fff;cursor:pointer}
</style></head>
<body><header><a href="{{ url_for('inbox') }}">Mail catcher</a>{% block actions %}{% endblock %}
</header><main>{% block content %}{% endblock %}</main></body></html>"""

INBOX = """{% extends "layout.html" %}
{% block actions %}<form method="post" action="{{ url_for('clear_inbox') }}">
<button type="submit">Delete all</button></form>{% endblock %}
{% block content %}
<p class="muted">{{ messages|length }} message{{ '' if messages|length == 1 else 's' }}</p>
{% if messages %}<ul class="inbox">{% for m in messages %}
<li><a href="{{ url_for('show_message', message_id=m.id) }}">
 <div class="subject">{{ m.subject or '(no subject)' }}</div>
 <div class="meta muted"><span>To: {{ m.to_header or m.rcpt_tos|join(', ') }}</span>
 <span>{{ m.date or m.received_at.strftime('%Y-%m-%d %H:%M:%S UTC') }}</span></div>
</a></li>{% endfor %}</ul>
{% else %}<div class="card">No mail yet. Send some to the SMTP port.</div>{% endif %}
{% endblock %}"""

MESSAGE = """{% extends "layout.html" %}
{% block title %}{{ m.subject or '(no subject)' }}{% endblock %}
{% block content %}
<div class="card"><dl>
 <dt>Subject</dt><dd class="subject">{{ m.subject or '(no subject)' }}</dd>
 <dt>From</dt><dd>{{ m.from_header or m.envelope_from }}</dd>
 <dt>To</dt><dd>{{ m.to_header or '' }}</dd>
 <dt>Delivered to</dt><dd>{{ m.rcpt_tos|join(', ') }}</dd>
 <dt>Date</dt><dd>{{ m.date or '' }}</dd>
 <dt>Received</dt><dd>{{ m.received_at.strftime('%Y-%m-%d %H:%M:%S UTC') }}</dd>
</dl></div>
<nav class="tabs">{% for name, label in tabs %}
 <a href="{{ url_for('show_message', message_id=m.id, view=name) }}"
    class="{{ 'active' if name == view else '' }}">{{ label }}</a>{% endfor %}
 <a href="{{ url_for('api_raw', message_id=m.id) }}">Download raw</a>
</nav>
<div class="card">
{% if view == 'html' %}<iframe sandbox srcdoc="{{ m.html }}" title="HTML body"></iframe>
{% elif view == 'text' %}<pre>{{ m.text }}</pre>
{% elif view == 'headers' %}<dl>{% for name, value in m.headers %}
 <dt>{{ name }}</dt><dd>{{ value }}</dd>{% endfor %}</dl>
{% else %}<pre>{{ m.raw_text }}</pre>{% endif %}
</div>
{% endblock %}"""


def _tabs(message: CapturedMessage) -> list[tuple[str, str]]:
    tabs = [("html", "HTML")] if message.html is not None else []
    if message.text is not None:
        tabs.append(("text", "Text"))
    return [*tabs, ("headers", "Headers"), ("raw", "Raw")]


def _page(template: str, **context: Any) -> Response:
    response = Response(render_template_string(template, **context))
    response.headers["Content-Security-Policy"] = CSP
    return response


def _message_or_404(store: MessageStore, message_id: int) -> CapturedMessage:
    message = store.get(message_id)
    if message is None:
        abort(404)
    return message


def _list(messages: list[CapturedMessage]) -> dict[str, Any]:
    return {"messages": [m.summary() for m in reversed(messages)]}


def _parse_fault(body: Any) -> Fault | str:
    """Return the Fault a PUT body asks for, or an error message."""
    if not isinstance(body, dict) or "reply" not in body:
        return 'expected a JSON object like {"reply": "451 4.3.0 try again later"}'
    reply, stage = body["reply"], body.get("stage", "data")
    if stage not in FAULT_STAGES:
        return f"stage must be one of {', '.join(FAULT_STAGES)}"
    if reply is not None and not (isinstance(reply, str) and FAULT_REPLY.fullmatch(reply)):
        return "reply must be null or one line starting with a 4xx or 5xx code"
    return Fault(reply=reply, stage=stage)


def _add_api_routes(app: Flask, store: MessageStore, faults: FaultSwitch) -> None:
    @app.get("/api/messages")
    def api_list() -> Any:
        return jsonify(_list(store.all()))

    @app.get("/api/messages/wait")
    def api_wait() -> Any:
        count = request.args.get("count", 1, type=int)
        timeout = request.args.get("timeout", 10.0, type=float)
        timeout = max(0.0, min(timeout, MAX_WAIT_SECONDS))  # never pin a server thread for long
        return jsonify(_list(store.wait_for(count, timeout)))

    @app.get("/api/messages/<int:message_id>")
    def api_message(message_id: int) -> Any:
        return jsonify(_message_or_404(store, message_id).detail())

    @app.get("/api/messages/<int:message_id>/raw")
    def api_raw(message_id: int) -> Any:
        raw = _message_or_404(store, message_id).raw
        return Response(raw, content_type="text/plain; charset=utf-8")

    @app.delete("/api/messages")
    def api_clear() -> Any:
        store.clear()
        return jsonify({"deleted": True})

    @app.get("/api/faults")
    def api_get_fault() -> Any:
        return jsonify(asdict(faults.current))

    @app.put("/api/faults")
    def api_put_fault() -> Any:
        fault = _parse_fault(request.get_json(silent=True))
        if isinstance(fault, str):
            return jsonify({"error": fault}), 400
        faults.current = fault
        log.info("SMTP fault set to %r on %s", fault.reply, fault.stage)
        return jsonify(asdict(fault))


def _add_page_routes(app: Flask, store: MessageStore) -> None:
    @app.get("/")
    def inbox() -> Any:
        return _page(INBOX, messages=list(reversed(store.all())))

    @app.post("/clear")
    def clear_inbox() -> Any:
        store.clear()
        return redirect(url_for("inbox"), code=303)

    @app.get("/messages/<int:message_id>")
    def show_message(message_id: int) -> Any:
        message = _message_or_404(store, message_id)
        tabs = _tabs(message)
        names = [name for name, _ in tabs]
        view = request.args.get("view", names[0])
        return _page(MESSAGE, m=message, tabs=tabs, view=view if view in names else names[0])


def create_app(store: MessageStore, faults: FaultSwitch) -> Flask:
    app = Flask(__name__)
    # The pages extend this by name; a ".html" name keeps Flask's autoescaping on for it too.
    app.jinja_loader = DictLoader({"layout.html": LAYOUT})

    @app.errorhandler(404)
    def not_found(error: Exception) -> Any:
        if request.path.startswith("/api/"):
            return jsonify({"error": "not found"}), 404
        return error

    _add_api_routes(app, store, faults)
    _add_page_routes(app, store)
    return app


# --- Process ------------------------------------------------------------------------------------


class MailCatcher:
    """SMTP capture server plus its HTTP inbox/API, runnable in-process (tests) or as a program."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        smtp_port: int = 1025,
        http_port: int = 8025,
        *,
        max_messages: int = MAX_MESSAGES,
    ) -> None:
        self.host = host
        self.smtp_port = smtp_port
        self.http_port = http_port
        self.store = MessageStore(max_messages)
        self.faults = FaultSwitch()
        self.app = create_app(self.store, self.faults)
        self._controller = Controller(
            CatchingHandler(self.store, self.faults),
            hostname=host,
            port=smtp_port,
            # A fixed name: aiosmtpd would otherwise call socket.getfqdn(), which can stall on DNS.
            server_hostname="mail-catcher.local",
            data_size_limit=DATA_SIZE_LIMIT,
            enable_SMTPUTF8=True,
        )
        self._http: BaseWSGIServer | None = None
        self._http_thread: threading.Thread | None = None

    @property
    def messages(self) -> list[CapturedMessage]:
        """Captured messages, oldest first (so `messages[-1]` is the latest)."""
        return self.store.all()

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.http_port}"

    def start(self) -> None:
        """Start SMTP and HTTP in background threads; returns once both accept connections."""
        self._controller.start()
        try:
            self._http = make_server(self.host, self.http_port, self.app, threaded=True)
        except BaseException:
            self._controller.stop()
            raise
        self._http_thread = threading.Thread(
            target=self._http.serve_forever,
            # A short poll keeps stop() (and so every test fixture teardown) quick.
            kwargs={"poll_interval": 0.05},
            name="mail-catcher-http",
            daemon=True,
        )
        self._http_thread.start()

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._http_thread is not None:
            self._http_thread.join(timeout=5)
            self._http_thread = None
        self._controller.stop(no_assert=True)

    def serve_forever(self) -> None:
        """Run SMTP in the background and HTTP in this thread until interrupted."""
        self._controller.start()
        try:
            self._http = make_server(self.host, self.http_port, self.app, threaded=True)
            self._http.serve_forever()
        finally:
            if self._http is not None:
                self._http.server_close()
                self._http = None
            self._controller.stop(no_assert=True)

    def __enter__(self) -> MailCatcher:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Capture mail locally: SMTP server + inbox.")
    parser.add_argument("--host", default="127.0.0.1", help="address for both servers")
    parser.add_argument(
        "--smtp-port",
        type=int,
        default=int(os.environ.get("SMTP_PORT", "1025")),
        help="SMTP port (env SMTP_PORT, default 1025)",
    )
    parser.add_argument(
        "--http-port",
        type=int,
        default=int(os.environ.get("MAIL_UI_PORT", "8025")),
        help="inbox and API port (env MAIL_UI_PORT, default 8025)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # aiosmtpd logs every connection step at INFO; our own line per stored message is enough.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    catcher = MailCatcher(args.host, args.smtp_port, args.http_port)
    log.info("SMTP on %s:%d, inbox at %s/", args.host, args.smtp_port, catcher.base_url)
    try:
        catcher.serve_forever()
    except KeyboardInterrupt:
        log.info("stopped")


if __name__ == "__main__":
    main()
