"""Structured logs (issue 12): one album's whole story, from its POST to its email, read off
the JSON lines of every service by its album_id, under one trace id."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from dev.images import png
from tests.e2e.conftest import PAGE_TOKEN, System
from tests.integration.helpers import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SERVICES = ("api", "uploader", "notifier")


def json_lines(system: System) -> list[dict[str, Any]]:
    """Every service's JSON lines, each with where it came from (`_file`, `_n`)."""
    lines = []
    for name in SERVICES:
        for n, text in enumerate(system.logs(name).splitlines()):
            try:
                line = json.loads(text)
            except ValueError:
                continue  # a line from outside logging (a library's print)
            if isinstance(line, dict):
                lines.append({**line, "_file": name, "_n": n})
    return lines


def story(system: System, album_id: str) -> list[dict[str, Any]]:
    return [line for line in json_lines(system) if line.get("album_id") == album_id]


def first(lines: list[dict[str, Any]], service: str, *words: str) -> dict[str, Any]:
    found = [
        line
        for line in lines
        if line["service"] == service and all(w in line["msg"] for w in words)
    ]
    assert found, f"no {service} line with {words} in:\n" + "\n".join(
        f"{line['service']}: {line['msg']}" for line in lines
    )
    return found[0]


def before(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """`a` came first: by line within one service's log, by timestamp across services."""
    if a["_file"] == b["_file"]:
        return bool(a["_n"] < b["_n"])
    return bool(a["ts"] <= b["ts"])


def test_one_albums_json_lines_tell_its_whole_story_under_one_trace(system: System) -> None:
    user = system.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
    good = [f"{user['prefix']}story/photo-{n}.png" for n in range(3)]
    for n, key in enumerate(good):
        system.put(key, png(64, 48, seed=n))
    broken = f"{user['prefix']}story/broken.png"
    system.put(broken, b"not an image at all")  # Facebook refuses it for good (code 324)
    response = system.publish(user["token"], title="Story", images=[*good, broken])
    assert response.status_code == 202, response.text
    album_id = response.json()["id"]
    album = system.wait_settled(user["token"], album_id)
    assert album["state"] == "done_with_failures"
    wait_for(
        lambda: any("mailed" in line["msg"] for line in story(system, album_id)),
        timeout=30,
        what="the notifier's line for the email",
    )

    lines = story(system, album_id)
    accepted = first(lines, "api", "accepted")
    trace = accepted["trace_id"]
    assert trace == response.headers["X-Trace-Id"]
    assert {line.get("trace_id") for line in lines} == {trace}, [
        (line["service"], line["msg"], line.get("trace_id"))
        for line in lines
        if line.get("trace_id") != trace
    ]
    image_ids = {line["image_id"] for line in lines if "upload started" in line["msg"]}
    assert len(image_ids) == 4
    endings = []
    for image_id in image_ids:
        of_image = [line for line in lines if line.get("image_id") == image_id]
        started = first(of_image, "uploader", "upload started")
        ended = next(
            line
            for line in of_image
            if "uploaded as photo" in line["msg"] or "failed for good" in line["msg"]
        )
        assert before(accepted, started) and before(started, ended)
        assert started["attempt"] == 1 and started["message_id"]
        endings.append(ended)
    [failed] = [line for line in endings if "failed for good" in line["msg"]]
    dead = first(lines, "uploader", "sent dead letter")
    assert dead["image_id"] == failed["image_id"] and before(failed, dead)
    settled = first(lines, "uploader", "sent album.settled")
    mailed = first(lines, "notifier", "mailed")
    assert before(dead, settled) and before(settled, mailed)
    [mail] = system.mails_to(user["email"])
    assert [value for name, value in mail["headers"] if name == "X-Album-Trace-Id"] == [trace]

    print(f"\nalbum {album_id}, trace {trace}: {len(lines)} lines")
    for line in lines:
        print(f"  {line['ts']} {line['service']:8} {line['msg']}")

    everything = "\n".join(system.logs(name) for name in SERVICES)
    for secret in (
        user["token"],
        PAGE_TOKEN,
        system.env["API_SECRET_KEY"],
        system.env["TOKEN_ENCRYPTION_KEYS"],
        ":guest@",
    ):
        assert secret not in everything
