"""Structured logs (issue 12): the ids the runtime binds for a handler and a request, the
trace id that travels in the outbox rows' headers, and the two line formats."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from dev.images import png
from services.notifier.email_message import TRACE_MAIL_HEADER, AlbumEmail, compose
from shared.broker.consumer import Consumer
from shared.contracts import messages, topology
from shared.contracts.outcomes import Transient
from shared.observability import log_context, log_format
from shared.policies.fate import Delivery, Route, decide
from shared.policies.retry_policy import ATTEMPT_HEADER, RetryPolicy
from tests.unit.test_web import make_env

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
log = logging.getLogger("tests.structured")


@pytest.fixture()
def json_lines() -> Iterator[io.StringIO]:
    """What `log` writes, as the services' JSON formatter writes it."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(log_format.JsonFormatter("unit"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield out
    finally:
        log.removeHandler(handler)


def parsed(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def upload(album_id: str, image_id: int, attempt: int = 2) -> Delivery:
    body = messages.encode(
        messages.ImageUploadRequested(album_id=album_id, image_id=image_id, key=f"u/{image_id}.png")
    )
    return Delivery(
        body, {log_context.TRACE_HEADER: TRACE, ATTEMPT_HEADER: attempt}, message_id=f"m{image_id}"
    )


def consumer_for(handler: Any) -> Consumer:
    route = Route(
        topology.IMAGE_UPLOADS, messages.ImageUploadRequested, handler, RetryPolicy((1, 2), 3)
    )
    # Never run: `_work` is the worker thread's step, and no connection is opened for it.
    return Consumer("amqp://guest:guest@127.0.0.1:1/%2F", route, 2)


def test_a_handlers_log_line_carries_the_deliverys_ids(json_lines: io.StringIO) -> None:
    def handler(message: messages.ImageUploadRequested, attempt: int) -> None:
        log.info("working on image %s", message.image_id)

    consumer_for(handler)._work(None, 1, upload("alb1", 7))  # type: ignore[arg-type]

    [line] = parsed(json_lines)
    assert (
        line["album_id"],
        line["image_id"],
        line["attempt"],
        line["trace_id"],
        line["message_id"],
    ) == ("alb1", 7, 2, TRACE, "m7")
    assert line["msg"] == "working on image 7"
    assert {"ts", "level", "logger", "service"} <= set(line)


def test_worker_threads_each_keep_their_own_deliverys_ids(json_lines: io.StringIO) -> None:
    both_inside = threading.Barrier(2, timeout=5)

    def handler(message: messages.ImageUploadRequested, attempt: int) -> None:
        both_inside.wait()  # the two handlers run side by side, as the uploader's threads do
        log.info("image %s", message.image_id)
        both_inside.wait()

    consumer = consumer_for(handler)
    threads = [
        threading.Thread(target=consumer._work, args=(None, n, upload(f"alb{n}", n)))
        for n in (1, 2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)

    lines = parsed(json_lines)
    assert sorted((line["album_id"], line["image_id"]) for line in lines) == [
        ("alb1", 1),
        ("alb2", 2),
    ]
    assert log_context.current() == {}  # nothing leaks past the handler


def test_a_retry_copy_and_a_dead_letter_keep_the_trace() -> None:
    def failing(message: messages.ImageUploadRequested, attempt: int) -> None:
        raise Transient("Facebook hiccup")

    route = Route(
        topology.IMAGE_UPLOADS, messages.ImageUploadRequested, failing, RetryPolicy((1, 2), 3)
    )
    retry = decide(route, upload("alb1", 1, attempt=1))
    dead = decide(route, upload("alb1", 1, attempt=3))
    assert (retry.kind, dead.kind) == ("retry", "dead")
    assert retry.outgoing[0].headers[log_context.TRACE_HEADER] == TRACE
    assert dead.outgoing[0].headers[log_context.TRACE_HEADER] == TRACE


def test_the_posts_trace_id_travels_in_its_outbox_rows_headers() -> None:
    env = make_env()
    keys = [f"{env.user.prefix}trip/{n}.png" for n in range(2)]
    for key in keys:
        env.put(key, png(8, 8))
    answer = env.app.test_client().post(
        "/api/albums",
        json={"title": "Trip", "images": keys},
        headers={
            "Authorization": f"Bearer {env.token}",
            "traceparent": f"00-{TRACE}-00f067aa0ba902b7-01",
        },
    )

    assert answer.status_code == 202, answer.get_json()
    assert answer.headers["X-Trace-Id"] == TRACE
    rows = env.services.fake_outbox.published
    assert len(rows) == 2
    assert [row.headers.get(log_context.TRACE_HEADER) for row in rows] == [TRACE, TRACE]


def test_a_post_without_a_trace_gets_a_new_one_per_request() -> None:
    env = make_env()
    key = f"{env.user.prefix}trip/1.png"
    env.put(key, png(8, 8))
    client = env.app.test_client()
    auth = {"Authorization": f"Bearer {env.token}", "X-Request-Id": "bad id; drop table"}
    first = client.post("/api/albums", json={"title": "A", "images": [key]}, headers=auth)
    second = client.post("/api/albums", json={"title": "B", "images": [key]}, headers=auth)

    traces = [row.headers[log_context.TRACE_HEADER] for row in env.services.fake_outbox.published]
    assert traces == [first.headers["X-Trace-Id"], second.headers["X-Trace-Id"]]
    assert traces[0] != traces[1] and all(len(t) == 32 for t in traces)
    assert log_context.current() == {}  # unbound once the request ended


def test_a_row_written_outside_any_trace_has_no_trace_header() -> None:
    env = make_env()
    _album, rows = env.store.create_album(env.user.id, "T", None, [f"{env.user.prefix}a.png"])
    assert log_context.TRACE_HEADER not in rows[0].headers


def test_a_json_line_holds_an_exception_as_one_string_field(json_lines: io.StringIO) -> None:
    with log_context.bound(album_id="alb9", trace_id=TRACE):
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("it failed")
    [line] = parsed(json_lines)
    assert line["level"] == "error" and line["album_id"] == "alb9"
    assert isinstance(line["exc"], str) and "ValueError: boom" in line["exc"]


def test_the_text_line_names_the_ids_for_grep() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "image %s uploaded", (3,), None)
    with log_context.bound(album_id="alb9", image_id=3):
        text = log_format.TextFormatter().format(record)
    assert text.endswith("x: image 3 uploaded [album_id=alb9 image_id=3]")


def test_log_format_defaults_to_text_on_a_terminal_and_json_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    assert (log_format.choose(None), log_format.choose("json")) == ("text", "json")
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    assert (log_format.choose(None), log_format.choose("text")) == ("json", "text")


def test_incoming_trace_ids_are_taken_only_when_well_formed() -> None:
    assert log_context.incoming_trace_id(f"00-{TRACE}-00f067aa0ba902b7-01", None) == TRACE
    assert log_context.incoming_trace_id("garbage", "req-42") == "req-42"
    made = log_context.incoming_trace_id("garbage", "x" * 65)
    assert len(made) == 32 and made != "x" * 65


def test_the_email_names_the_albums_trace() -> None:
    event = messages.AlbumSettled(album_id="alb9", settle_seq=1, uploaded=[], failed=[])
    mail = AlbumEmail("me@example.com", "Trip", "http://x/albums/alb9", event)
    with log_context.bound(trace_id=TRACE):
        traced = compose(mail, "albums@localhost")
    assert traced[TRACE_MAIL_HEADER] == TRACE
    assert compose(mail, "albums@localhost")[TRACE_MAIL_HEADER] is None
