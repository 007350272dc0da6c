"""The uploader as a process: SIGTERM finishes what it holds and exits 0; SIGKILL loses
nothing and uploads nothing twice; the API's retry re-opens an album and mails again."""

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from dev.images import png
from tests.e2e.conftest import ROOT, System
from tests.integration.helpers import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture()
def user(system: System) -> dict[str, Any]:
    return system.create_user(f"{uuid.uuid4().hex[:8]}@example.com")


def image_state(system: System, user: dict[str, Any], album_id: str) -> str:
    state: str = system.album(user["token"], album_id)["images"][0]["state"]
    return state


def restart_uploader(system: System) -> None:
    system.start_service("uploader")


def slow_album(system: System, user: dict[str, Any], title: str) -> str:
    key = f"{user['prefix']}{title}/slow.png"
    system.put(key, png(64, 64, seed=99))
    system.set_faults(latency_s=3.0)
    response = system.publish(user["token"], title=title, images=[key])
    album_id: str = response.json()["id"]
    wait_for(
        lambda: image_state(system, user, album_id) == "uploading",
        timeout=30,
        what="the upload to start",
    )
    return album_id


def test_sigterm_finishes_the_upload_in_flight_and_exits_0(
    system: System, user: dict[str, Any]
) -> None:
    album_id = slow_album(system, user, "term")
    uploader = system.processes["uploader"]
    uploader.send_signal(signal.SIGTERM)
    try:
        assert uploader.wait(30) == 0
        assert image_state(system, user, album_id) == "uploaded"
    finally:
        system.set_faults()
        restart_uploader(system)
    assert "received SIGTERM" in system.logs("uploader")


@pytest.mark.usefixtures("album_creation_allowed")  # the album's listing finds the photo
def test_an_uploader_killed_mid_upload_three_times_sends_the_photo_once(
    system: System, user: dict[str, Any]
) -> None:
    album_id = slow_album(system, user, "kill")
    try:
        for _ in range(3):
            wait_for(
                lambda: image_state(system, user, album_id) == "uploading",
                timeout=30,
                what="the upload to be in flight",
            )
            system.processes["uploader"].kill()
            system.processes["uploader"].wait(10)
            restart_uploader(system)
        system.set_faults()
        album = system.wait_settled(user["token"], album_id, timeout=120)
    finally:
        system.set_faults()
    assert album["state"] == "done"
    # One image, one photo in the album's Facebook album (captions carry no mark of ours).
    photo_id = album["images"][0]["photo_id"]
    photos = system.photos()
    fb_album = {p["album_id"] for p in photos if p["id"] == photo_id}
    mine = [p for p in photos if p["album_id"] in fb_album]
    assert [p["id"] for p in mine] == [album["images"][0]["photo_id"]]


def test_retrying_refused_images_reopens_the_album_and_mails_again(
    system: System, user: dict[str, Any]
) -> None:
    keys = [f"{user['prefix']}again/ok-{n}.png" for n in range(2)]
    keys.append(f"{user['prefix']}again/refuse-me.png")
    for n, key in enumerate(keys):
        system.put(key, png(32, 32, seed=500 + n))
    system.set_faults(reject_filenames=["refuse-me"])
    album_id = system.publish(user["token"], title="Again", images=keys).json()["id"]
    album = system.wait_settled(user["token"], album_id)
    assert album["state"] == "done_with_failures"
    wait_for(lambda: len(system.mails_to(user["email"])) == 1, what="the first email")

    system.set_faults()
    response = requests.post(
        f"{system.api_url}/api/albums/{album_id}/retry",
        timeout=10,
        headers={"Authorization": f"Bearer {user['token']}"},
    )
    assert response.status_code == 202 and response.json()["reopened"] == 1
    album = system.wait_settled(user["token"], album_id)
    assert album["state"] == "done"

    def both_mails() -> list[dict[str, Any]] | None:
        mails = system.mails_to(user["email"])
        return mails if len(mails) == 2 else None

    mails = wait_for(both_mails, what="the second email")
    assert sorted(m["subject"] for m in mails) == [
        "Your album 'Again' is on Facebook: 2 of 3 photos",
        "Your album 'Again' is on Facebook: all 3 photos",
    ]


def children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return set(map(int, path.read_text().split())) if path.exists() else set()


def two_children(pid: int, gone: int | None = None) -> set[int] | None:
    """The process's children once there are two and `gone` is not one of them, else None."""
    kids = children(pid)
    return kids if len(kids) == 2 and gone not in kids else None


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture()
def pool(system: System) -> Iterator[subprocess.Popen[bytes]]:
    """A second uploader of two processes beside the system's own, stopped after the test."""
    parent = subprocess.Popen(
        [sys.executable, "-m", "services.uploader"],
        cwd=ROOT,
        env={**system.env, "UPLOADER_PROCESSES": "2"},
    )
    yield parent
    if parent.poll() is None:
        parent.kill()
        parent.wait()


def test_a_pool_of_uploader_processes_restarts_a_dead_one_and_dies_with_its_parent(
    pool: subprocess.Popen[bytes],
) -> None:
    first = wait_for(lambda: two_children(pool.pid), timeout=30, what="two uploader processes")
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    again = wait_for(
        lambda: two_children(pool.pid, victim),
        timeout=30,
        what="the dead process to be started again",
    )
    pool.kill()
    pool.wait()
    wait_for(
        lambda: not any(alive(pid) for pid in again),
        timeout=10,
        what="the processes to die with their parent",
    )


def test_sigterm_stops_a_pool_of_uploader_processes_with_exit_0(
    pool: subprocess.Popen[bytes],
) -> None:
    kids = wait_for(lambda: two_children(pool.pid), timeout=30, what="two uploader processes")
    pool.send_signal(signal.SIGTERM)
    assert pool.wait(60) == 0
    assert not any(alive(pid) for pid in kids)
