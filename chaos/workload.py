"""Seeded random albums: their images in the bucket, and a client that publishes them the way a
browser would (a refused or failed request is tried again, up to a deadline)."""

from __future__ import annotations

import hashlib
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests

from chaos.system import System
from dev.images import png, png_of_size


@dataclass(frozen=True)
class AlbumPlan:
    title: str
    keys: tuple[str, ...]
    #: sha256 of each key's bytes: a photo on Facebook must carry exactly these.
    hashes: dict[str, str] = field(compare=False, hash=False)
    #: The id of the user who publishes it (the row's user unless the row added others).
    owner: int = field(default=0, compare=False)


@dataclass
class Answer:
    album_id: str
    queued: bool
    at: float


class Workload:
    """The row's users (one, unless the row adds more), their albums, and what the API
    answered for each."""

    def __init__(self, system: System, rng: random.Random, user: dict[str, Any]) -> None:
        self.system = system
        self.rng = rng
        self.user = user
        self.users: dict[int, dict[str, Any]] = {int(user["id"]): user}
        self.plans: list[AlbumPlan] = []
        self.accepted: dict[str, AlbumPlan] = {}
        self.answers: list[Answer] = []
        self.refusals = 0
        self._lock = threading.Lock()

    def add_user(self, email: str) -> dict[str, Any]:
        """Another user publishing in this row (the ledger judges every user's albums)."""
        user = self.system.create_user(email)
        self.users[int(user["id"])] = user
        return user

    def make_albums(
        self,
        albums: tuple[int, int],
        images: tuple[int, int],
        refused: float = 0.0,
        big_first: int = 0,
        user: dict[str, Any] | None = None,
    ) -> list[AlbumPlan]:
        """Put seeded random PNGs in the bucket; a `refused` share carry the refused mark, and
        with `big_first` the first image is an incompressible one of about that many bytes.
        Published by `user` (default: the row's user)."""
        user = user or self.user
        s3 = self.system.s3()
        plans = []
        for a in range(self.rng.randint(*albums)):
            keys, hashes = [], {}
            for n in range(self.rng.randint(*images)):
                mark = "-refused-" if self.rng.random() < refused else ""
                key = f"{user['prefix']}chaos/{len(self.plans) + a}/img-{n:02d}{mark}.png"
                body = png(
                    self.rng.randint(16, 96),
                    self.rng.randint(16, 96),
                    seed=self.rng.randrange(1 << 30),
                )
                if big_first and a == 0 and n == 0:
                    body = png_of_size(big_first, seed=self.rng.randrange(1 << 30))
                s3.put_object(
                    Bucket=self.system.bucket, Key=key, Body=body, ContentType="image/png"
                )
                keys.append(key)
                hashes[key] = hashlib.sha256(body).hexdigest()
            plans.append(
                AlbumPlan(
                    f"chaos album {len(self.plans) + a}", tuple(keys), hashes, int(user["id"])
                )
            )
        self.plans.extend(plans)
        return plans

    @property
    def image_count(self) -> int:
        return sum(len(plan.keys) for plan in self.plans)

    def publish(self, plan: AlbumPlan, deadline_s: float = 180) -> str | None:
        """POST the album until the API accepts it (202); None if it never did.

        As a careful client does: one Idempotency-Key for the album, sent again with every
        try, so that a try whose answer was an error or never came, yet which the store
        recorded, comes back as the same album rather than a second one. Only an answer that
        may change is waited out (none, 5xx, 429); another 4xx ends the tries."""
        deadline = time.monotonic() + deadline_s
        body = {"title": plan.title, "images": list(plan.keys)}
        key = uuid.uuid4().hex
        token = self.users.get(plan.owner, self.user)["token"]
        while time.monotonic() < deadline:
            try:
                response = self.system.publish(token, body, key)
            except requests.RequestException:
                response = None
            if response is not None and response.status_code == 202:
                return self._accepted(plan, response.json())
            with self._lock:
                self.refusals += 1
            if response is not None and response.status_code < 500 and response.status_code != 429:
                return None
            time.sleep(1)
        return None

    def retry(self, album_id: str) -> requests.Response:
        """The user's "try the failed photos again" (POST /api/albums/<id>/retry)."""
        return requests.post(
            f"{self.system.api_url}/api/albums/{album_id}/retry",
            timeout=60,
            headers={"Authorization": f"Bearer {self.user['token']}"},
        )

    def _accepted(self, plan: AlbumPlan, body: dict[str, Any]) -> str:
        with self._lock:
            self.accepted[body["id"]] = plan
            self.answers.append(Answer(body["id"], bool(body.get("queued")), time.monotonic()))
        return str(body["id"])

    def publish_all(self, plans: list[AlbumPlan], gap_s: float = 0.0) -> None:
        for plan in plans:
            self.publish(plan)
            time.sleep(gap_s)

    def publish_in_background(self, plans: list[AlbumPlan], gap_s: float = 0.0) -> threading.Thread:
        thread = threading.Thread(
            target=self.publish_all, args=(plans, gap_s), daemon=True, name="workload"
        )
        thread.start()
        return thread

    def wait_accepted(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.accepted) < count and time.monotonic() < deadline:
            time.sleep(0.05)
