"""The dead-letter desk in a real browser (the must-show of issue 12, item 3): an operator sees
the group "refused: code 324", opens a letter, replays it after the refusal is lifted, and the
album settles again; an end user gets 403 there. Uses test_browser.py's Chromium fixture."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from tests.e2e.conftest import System
from tests.e2e.test_browser import LIVE_S, browser, seed_photos  # noqa: F401 - the fixture
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.e2e


def _sign_in(page: Any, system: System, token: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{system.api_url}/login")
    page.get_by_label("Access token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Your albums")).to_be_visible()


def test_an_operator_replays_a_refused_photo_and_an_end_user_gets_403(
    system: System,
    browser: Any,  # noqa: F811 - the imported fixture
) -> None:
    from playwright.sync_api import expect

    user = system.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
    operator = system.create_user(f"op-{uuid.uuid4().hex[:8]}@example.com", operator=True)
    assert operator["role"] == "operator" and user["role"] == "user"
    refused = f"refused-{uuid.uuid4().hex[:6]}"
    names = ["beach.png", f"{refused}.png"]
    seed_photos(system, user["prefix"], names)
    system.set_faults(reject_filenames=[refused])
    published = system.publish(
        user["token"], title="Desk", images=[f"{user['prefix']}summer/{name}" for name in names]
    )
    assert published.status_code == 202, published.text
    album_id = published.json()["id"]
    assert system.wait_settled(user["token"], album_id)["state"] == "done_with_failures"

    page = browser.new_page()
    _sign_in(page, system, operator["token"])
    page.goto(f"{system.api_url}/operator/dead-letters")
    group = page.get_by_role("link", name="refused: code 324")
    expect(group).to_be_visible()
    group.click()
    expect(page.get_by_role("heading", name="refused: code 324")).to_be_visible()
    mine = page.locator('[data-role="letter"]', has_text=album_id)
    expect(mine).to_have_count(1)
    mine.get_by_role("link").click()
    expect(page.locator('[data-role="reason"]')).to_contain_text("(code 324)")
    expect(page.locator('[data-role="headers"]')).to_contain_text("dead-reason")
    expect(page.locator('[data-role="body"]')).to_contain_text(f"{refused}.png")

    system.set_faults()  # the refusal is lifted
    page.get_by_role("button", name="Replay", exact=True).click()
    expect(page.get_by_text("Replayed 1 dead letter.")).to_be_visible()
    expect(page.locator('[data-role="letter-state"]')).to_contain_text(
        re.compile(rf"replayed by {re.escape(operator['email'])}")
    )
    album = wait_for(
        lambda: (a := system.album(user["token"], album_id))["state"] == "done" and a,
        timeout=LIVE_S / 1000,
        every=0.2,
        what="the album to settle again",
    )
    assert {image["state"] for image in album["images"]} == {"uploaded"}
    page.goto(f"{system.api_url}/operator/dead-letters")
    expect(page.locator('[data-role="audit"]')).to_contain_text(operator["email"])
    page.get_by_role("button", name="Sign out").click()

    _sign_in(page, system, user["token"])
    for path in ("/operator/dead-letters", "/operator/stuck"):
        response = page.goto(f"{system.api_url}{path}")
        assert response is not None and response.status == 403
    page.close()
