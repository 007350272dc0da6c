"""Fair turns between albums (issue 10): one user's big album does not hold back another's."""

import math
import time
import uuid

import pytest

from dev.images import png
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.e2e

#: Every Graph call takes this long: the rounds of uploads, not our own overheads, set the pace.
LATENCY_S = 0.3


def seed(system, user, count, folder):
    keys = [f"{user['prefix']}{folder}/photo-{n:03d}.png" for n in range(count)]
    for n, key in enumerate(keys):
        system.put(key, png(8, 8, seed=n))
    return keys


def test_a_small_album_published_behind_a_big_one_settles_first(system):
    big_user = system.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
    small_user = system.create_user(f"{uuid.uuid4().hex[:8]}@example.com")
    big_keys = seed(system, big_user, 200, "big")
    small_keys = seed(system, small_user, 5, "small")
    concurrency = int(system.env["UPLOADER_CONCURRENCY"])
    system.set_faults(latency_s=LATENCY_S)

    big = system.publish(big_user["token"], title="Big", images=big_keys)
    assert big.status_code == 202, big.text
    wait_for(lambda: system.album(big_user["token"], big.json()["id"])["counts"]
             .get("uploaded", 0) >= concurrency, timeout=30, every=0.05,
             what="the big album to be under way")
    started = time.monotonic()
    small = system.publish(small_user["token"], title="Small", images=small_keys)
    assert small.status_code == 202, small.text
    small_album = system.wait_settled(small_user["token"], small.json()["id"], timeout=120)
    took = time.monotonic() - started
    big_then = system.album(big_user["token"], big.json()["id"])

    # Its own ideal: its uploads in rounds of `concurrency`, and the one call that makes its
    # Facebook destination (an album, or the post its photos fall back to).
    ideal = (math.ceil(len(small_keys) / concurrency) + 1) * LATENCY_S
    print(f"\nsmall album settled in {took:.2f} s (ideal {ideal:.2f} s) with the big one "
          f"at {big_then['counts']}")
    assert small_album["state"] == "done", small_album
    assert big_then["state"] == "publishing", big_then["counts"]
    assert took <= 2 * ideal, f"{took:.2f} s, more than twice its ideal {ideal:.2f} s"

    big_album = system.wait_settled(big_user["token"], big.json()["id"], timeout=180)
    assert big_album["state"] == "done", big_album["counts"]
