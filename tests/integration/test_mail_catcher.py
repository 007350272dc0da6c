"""The mail catcher over loopback SMTP and HTTP: what is sent is what the API and pages show."""

from __future__ import annotations

import smtplib
import threading
import time
from email.message import EmailMessage
from typing import Any

import pytest
import requests

from dev.mail_catcher import DATA_SIZE_LIMIT, MailCatcher
from dev.ports import free_port

pytestmark = pytest.mark.integration

SCRIPT_SUBJECT = "Album <script>alert('x')</script> published"


@pytest.fixture
def api(catcher: MailCatcher) -> str:
    return catcher.base_url + "/api"


def make_message(
    subject: str = "Your album is live", to: str = "alice@example.com"
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Album Publisher <noreply@example.com>"
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content("Plain body: 12 photos published.\n")
    msg.add_alternative("<p>HTML body: <b>12</b> photos published.</p>", subtype="html")
    return msg


def send(catcher: MailCatcher, *messages: EmailMessage) -> None:
    with smtplib.SMTP("127.0.0.1", catcher.smtp_port, timeout=10) as smtp:
        for msg in messages:
            smtp.send_message(msg)


def listed(api: str) -> list[dict[str, Any]]:
    response = requests.get(f"{api}/messages", timeout=5)
    response.raise_for_status()
    listing: list[dict[str, Any]] = response.json()["messages"]
    return listing


def set_fault(api: str, reply: str | None, stage: str = "data") -> None:
    response = requests.put(f"{api}/faults", json={"reply": reply, "stage": stage}, timeout=5)
    response.raise_for_status()


def test_multipart_message_is_listed_with_both_parts_and_raw(
    catcher: MailCatcher, api: str
) -> None:
    send(catcher, make_message())

    [summary] = listed(api)
    assert summary["subject"] == "Your album is live"
    assert summary["to"] == ["alice@example.com"]
    assert summary["from"] == "Album Publisher <noreply@example.com>"
    assert summary["envelope_from"] == "noreply@example.com"

    detail = requests.get(f"{api}/messages/{summary['id']}", timeout=5).json()
    assert detail["text"] == "Plain body: 12 photos published.\n"
    assert detail["html"].strip() == "<p>HTML body: <b>12</b> photos published.</p>"
    assert ["Subject", "Your album is live"] in detail["headers"]

    raw = requests.get(f"{api}/messages/{summary['id']}/raw", timeout=5)
    assert raw.headers["Content-Type"].startswith("text/plain")
    assert "Subject: Your album is live" in raw.text
    assert "multipart/alternative" in raw.text
    assert catcher.messages[-1].subject == "Your album is live"


def test_messages_are_listed_newest_first_with_increasing_ids(
    catcher: MailCatcher, api: str
) -> None:
    send(catcher, make_message("first"), make_message("second"))

    first, second = catcher.messages
    assert second.id > first.id
    assert [m["subject"] for m in listed(api)] == ["second", "first"]


def test_unknown_message_is_a_404(catcher: MailCatcher, api: str) -> None:
    response = requests.get(f"{api}/messages/999", timeout=5)
    assert response.status_code == 404
    assert response.json() == {"error": "not found"}
    assert requests.get(f"{api}/messages/999/raw", timeout=5).status_code == 404
    assert requests.get(f"{catcher.base_url}/messages/999", timeout=5).status_code == 404


def test_inbox_lists_message_and_pages_escape_markup(catcher: MailCatcher) -> None:
    msg = make_message(SCRIPT_SUBJECT)
    msg.get_body(preferencelist=("html",)).set_content(  # type: ignore[union-attr]
        "<p>hi</p><script>alert('from mail')</script>", subtype="html"
    )
    send(catcher, msg)
    message_id = catcher.messages[-1].id

    inbox = requests.get(catcher.base_url + "/", timeout=5)
    assert inbox.status_code == 200
    assert f"/messages/{message_id}" in inbox.text
    assert "alice@example.com" in inbox.text
    assert "&lt;script&gt;alert(" in inbox.text
    assert "<script>" not in inbox.text
    assert "script-src" not in inbox.headers["Content-Security-Policy"]  # so default 'none'

    page = requests.get(f"{catcher.base_url}/messages/{message_id}", timeout=5)
    assert page.status_code == 200
    assert "<script>" not in page.text
    assert "&lt;script&gt;alert(" in page.text
    # The HTML part is shown only inside a script-less sandboxed iframe, escaped into srcdoc.
    assert '<iframe sandbox srcdoc="&lt;p&gt;hi&lt;/p&gt;&lt;script&gt;' in page.text

    text_view = requests.get(f"{catcher.base_url}/messages/{message_id}?view=text", timeout=5)
    assert "Plain body: 12 photos published." in text_view.text
    raw_view = requests.get(f"{catcher.base_url}/messages/{message_id}?view=raw", timeout=5)
    assert "multipart/alternative" in raw_view.text
    assert "<script>" not in raw_view.text


def test_delete_clears_the_inbox(catcher: MailCatcher, api: str) -> None:
    send(catcher, make_message(), make_message())
    assert len(listed(api)) == 2

    assert requests.delete(f"{api}/messages", timeout=5).status_code == 200

    assert listed(api) == []
    assert catcher.messages == []


def test_data_fault_rejects_mail_until_reset(catcher: MailCatcher, api: str) -> None:
    set_fault(api, "451 4.3.0 try again later")
    assert requests.get(f"{api}/faults", timeout=5).json() == {
        "reply": "451 4.3.0 try again later",
        "stage": "data",
    }

    with pytest.raises(smtplib.SMTPDataError) as excinfo:
        send(catcher, make_message())
    assert excinfo.value.smtp_code == 451
    assert b"try again later" in excinfo.value.smtp_error
    assert listed(api) == []
    assert catcher.messages == []

    set_fault(api, None)
    send(catcher, make_message())
    assert [m["subject"] for m in listed(api)] == ["Your album is live"]


def test_rcpt_fault_refuses_recipients(catcher: MailCatcher, api: str) -> None:
    set_fault(api, "550 5.1.1 no such user", stage="rcpt")

    with pytest.raises(smtplib.SMTPRecipientsRefused) as excinfo:
        send(catcher, make_message())
    assert excinfo.value.recipients == {"alice@example.com": (550, b"5.1.1 no such user")}
    assert catcher.messages == []


def test_quit_fault_answers_quit_after_keeping_the_mail(catcher: MailCatcher, api: str) -> None:
    set_fault(api, "421 4.4.2 closing", stage="quit")

    smtp = smtplib.SMTP("127.0.0.1", catcher.smtp_port, timeout=10)
    try:
        smtp.send_message(make_message())
        assert smtp.docmd("QUIT") == (421, b"4.4.2 closing")
    finally:
        smtp.close()
    assert [m["subject"] for m in listed(api)] == ["Your album is live"]


@pytest.mark.parametrize(
    "body",
    [
        {"reply": "250 fine"},
        {"reply": "451 ok\r\n250 injected"},
        {"reply": 451},
        {"reply": "451 later", "stage": "helo"},
        {"nothing": True},
    ],
)
def test_invalid_faults_are_rejected(api: str, body: dict[str, Any]) -> None:
    response = requests.put(f"{api}/faults", json=body, timeout=5)
    assert response.status_code == 400
    assert requests.get(f"{api}/faults", timeout=5).json()["reply"] is None


def test_wait_blocks_until_the_message_arrives(catcher: MailCatcher, api: str) -> None:
    sender = threading.Timer(0.3, send, args=(catcher, make_message("late")))
    sender.start()
    try:
        response = requests.get(f"{api}/messages/wait?count=1&timeout=10", timeout=15)
    finally:
        sender.join()
    assert [m["subject"] for m in response.json()["messages"]] == ["late"]


def test_wait_gives_up_after_the_timeout(api: str) -> None:
    started = time.monotonic()
    response = requests.get(f"{api}/messages/wait?count=1&timeout=0.3", timeout=10)
    assert time.monotonic() - started >= 0.3
    assert response.json() == {"messages": []}


def test_oldest_messages_are_pruned_past_the_limit() -> None:
    with MailCatcher("127.0.0.1", free_port(), free_port(), max_messages=3) as small:
        send(small, *(make_message(f"m{i}") for i in range(5)))
        assert [m.subject for m in small.messages] == ["m2", "m3", "m4"]


def test_smtputf8_and_size_limit_are_advertised(catcher: MailCatcher, api: str) -> None:
    msg = make_message("Zoë’s album ✓", to="zoë@exämple.org")
    with smtplib.SMTP("127.0.0.1", catcher.smtp_port, timeout=10) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("smtputf8")
        assert smtp.esmtp_features["size"] == str(DATA_SIZE_LIMIT)
        smtp.send_message(msg)  # non-ASCII address: smtplib sends it with SMTPUTF8

    [summary] = listed(api)
    assert summary["subject"] == "Zoë’s album ✓"
    assert summary["to"] == ["zoë@exämple.org"]
