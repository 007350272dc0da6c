"""The end-of-row check, Jepsen style: every accepted image ended exactly once, on Facebook at
most once, every settled album mailed exactly once, the queues empty and the dead letters
holding only what was meant to die."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from chaos.pages import reconnect_mails
from chaos.system import ALBUM_LINK, System, wait_for
from chaos.workload import Workload
from shared.broker.dead_letter_queue import DeadLetterQueue
from shared.contracts import topology
from shared.contracts.dead_letters import DeadLetter
from shared.store import TERMINAL, AlbumState, AlbumView, ImageState, PostState, Store

UPLOADER_DEAD = topology.dead_letter_queue_name(topology.IMAGE_UPLOADS)
NOTIFIER_DEAD = topology.dead_letter_queue_name(topology.ALBUM_SETTLED)
FEED_POSTS_DEAD = topology.dead_letter_queue_name(topology.FEED_POSTS)


@dataclass
class Expect:
    """What a row is allowed to end with besides success."""

    #: Letters in the uploader's dead letters that belong to no image (injected poison).
    poison: int = 0
    #: Which failed images are fine: "none", "exhausted" (attempts spent), "refused" (code 324).
    failed: str = "none"
    #: Keys Facebook refuses: exactly these must fail.
    refused_keys: frozenset[str] = frozenset()
    #: No image may have been attempted more often than this (a tight retry loop).
    max_attempts: int | None = None
    #: Times each album settles (a retried album settles, and is mailed, once more).
    settles: int = 1
    #: Every album goes out as one multi-photo post (Facebook refuses to create albums).
    posts: bool = False
    #: Emails asking a Page's owner to reconnect it (Facebook refused its token or blocked it).
    reconnect_mails: int = 0


@dataclass
class Row:
    name: str
    seed: int
    albums: int = 0
    images: int = 0
    uploaded: int = 0
    failed: int = 0
    lost: int = 0
    duplicates: int = 0
    emails: int = 0
    #: Emails asking a Page's owner to reconnect (not counted in `emails`).
    reconnect_mails: int = 0
    #: Multi-photo posts on the Page attaching the row's photos.
    posts: int = 0
    drained: bool = False
    dead: int = 0
    seconds: float = 0.0
    #: Seconds each phase took (start, fault, settle, check, stop): where a slow row went.
    phases: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


def settle(system: System, work: Workload, timeout: float, expect_settles: int = 1) -> None:
    """Wait (bounded) for albums to settle, their emails to arrive and the queues to drain.

    Never fails: whatever did not happen in time shows up in the check."""
    store = Store(system.db.url())
    try:
        _quietly(lambda: _all_settled(store, work), timeout, "albums to settle")
        # A relay round that failed keeps its rows leased (30 s) before the next one tries.
        _quietly(lambda: store.unpublished_count() == 0, 90, "the outbox to empty")
    finally:
        store.dispose()
    _quietly(
        lambda: len(_album_mails(system.mails())) >= len(work.accepted) * expect_settles,
        60,
        "emails",
    )
    _quietly(lambda: _drained_for(system, 3.0), 90, "queues to drain")


def _quietly(check: Any, timeout: float, what: str) -> None:
    try:
        wait_for(check, timeout, what=what, every=0.5)
    except TimeoutError:
        pass


def _all_settled(store: Store, work: Workload) -> bool:
    albums = [store.album(album_id) for album_id in work.accepted]
    return all(album is not None and album.state != AlbumState.PUBLISHING for album in albums)


def _drained_for(system: System, quiet_s: float) -> bool:
    """Drained now and still `quiet_s` later: a retry tier may hold a message for seconds."""
    if _busy_queues(system):
        return False
    time.sleep(quiet_s)
    return not _busy_queues(system)


def _busy_queues(system: System) -> dict[str, int]:
    queues = system.node.queues(system.vhost)
    return {
        name: q["ready"] + q["unacked"]
        for name, q in queues.items()
        if not name.endswith(".dead") and q["ready"] + q["unacked"]
    }


def check(row: Row, system: System, work: Workload, expect: Expect) -> Row:
    store = Store(system.db.url())
    try:
        albums = _albums(store, work)
        outbox_left = store.unpublished_count()
    finally:
        store.dispose()
    row.albums = len(work.accepted)
    row.images = sum(len(plan.keys) for plan in work.accepted.values())
    images = {(a.id, i.id): i for a in albums.values() for i in a.images}
    keys = {(a.id, i.id): i.key for a in albums.values() for i in a.images}
    row.uploaded = sum(1 for i in images.values() if i.state == ImageState.UPLOADED)
    row.failed = sum(1 for i in images.values() if i.state == ImageState.FAILED)
    _check_albums(row, work, albums, expect)
    _check_photos(row, system, work, images, keys)
    _check_emails(row, system, albums, expect)
    _check_posts(row, system, albums, expect)
    _check_client_view(row, work, expect)
    _check_queues(row, system, outbox_left)
    _check_dead_letters(row, system, images, expect)
    _check_failures(row, images, expect)
    _check_processes(row, system)
    return row


def _albums(store: Store, work: Workload) -> dict[str, AlbumView]:
    return {
        album.id: album for user_id in work.users for album in store.albums(user_id, limit=10_000)
    }


def _check_albums(row: Row, work: Workload, albums: dict[str, AlbumView], expect: Expect) -> None:
    for album_id, plan in work.accepted.items():
        album = albums.get(album_id)
        if album is None:
            row.lost += len(plan.keys)
            row.problems.append(f"accepted album {album_id} is not in the store")
            continue
        stuck = [i for i in album.images if i.state not in TERMINAL]
        row.lost += len(stuck)
        if stuck:
            states = Counter(i.state for i in stuck)
            row.problems.append(
                f"album {album_id[:8]}: {len(stuck)} images never ended ({dict(states)})"
            )
        elif album.state == AlbumState.PUBLISHING:
            row.lost += 1
            row.problems.append(f"album {album_id[:8]}: every image ended, album never settled")
        elif album.settle_seq != expect.settles:
            row.problems.append(
                f"album {album_id[:8]} settled {album.settle_seq} times, expected {expect.settles}"
            )
    # An album the client was answered an error for, yet in the store: the client published it
    # again, and the user got its photos and email twice.
    extra = set(albums) - set(work.accepted)
    if extra:
        row.problems.append(
            f"{len(extra)} albums in the store the client saw refused "
            f"({', '.join(sorted(a[:8] for a in extra))})"
        )


def _check_photos(
    row: Row,
    system: System,
    work: Workload,
    images: dict[tuple[str, int], Any],
    keys: dict[tuple[str, int], str],
) -> None:
    # A photo is counted for the image whose bytes it carries (every image's are seeded
    # random, so unique): captions are the user's words, with no mark of ours to go by.
    hashes = {k: h for plan in work.plans for k, h in plan.hashes.items()}
    by_bytes = {hashes[key]: ref for ref, key in keys.items() if key in hashes}
    per_image: Counter[tuple[str, int]] = Counter()
    stray = 0
    for photo in system.photos():
        ref = by_bytes.get(photo["sha256"])
        if ref is None or ref not in images:
            row.problems.append(f"unexpected photo {photo['id']} ({photo.get('caption')!r})")
            continue
        if _stray_unpublished(photo, images[ref]):
            # An unpublished upload the post did not attach (a retry after a lost answer
            # cannot look for it: unpublished photos are listed nowhere). Nobody sees it, and
            # Facebook drops it within a day: counted apart, not as a duplicate.
            stray += 1
            continue
        per_image[ref] += 1
        if photo["sha256"] != hashes.get(keys[ref]):
            row.problems.append(f"photo {photo['id']} of image {ref[1]} has other bytes")
        if "ref:" in (photo.get("caption") or ""):
            row.problems.append(f"photo {photo['id']} shows an internal mark in its caption")
    if stray:
        row.notes.append(
            f"{stray} unpublished uploads never attached (invisible, dropped by "
            "Facebook within a day)"
        )
    row.duplicates = sum(n - 1 for n in per_image.values() if n > 1)
    if row.duplicates:
        twice = [str(ref[1]) for ref, n in per_image.items() if n > 1]
        row.problems.append(f"duplicate photos for images {', '.join(twice)}")
    for ref, image in images.items():
        if image.state == ImageState.UPLOADED and per_image[ref] == 0:
            row.lost += 1
            row.problems.append(f"image {ref[1]} recorded uploaded but not on Facebook")
        if image.state == ImageState.FAILED and per_image[ref]:
            row.problems.append(f"image {ref[1]} recorded failed but is on Facebook")


def _stray_unpublished(photo: dict[str, Any], image: Any) -> bool:
    """An unpublished photo that is not the one recorded for its image (so never attached)."""
    return photo.get("published") is False and photo["id"] != image.photo_id


def _album_mails(mails: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The mails about an album (a settle's), not those asking to reconnect a Page."""
    return [m for m in mails if not reconnect_mails([m])]


def _check_emails(row: Row, system: System, albums: dict[str, AlbumView], expect: Expect) -> None:
    mails = system.mails()
    asked = Counter(to for mail in reconnect_mails(mails) for to in mail.get("to") or [])
    row.reconnect_mails = sum(asked.values())
    if row.reconnect_mails != expect.reconnect_mails:
        row.problems.append(
            f"{row.reconnect_mails} emails asking to reconnect a Page "
            f"({dict(asked)}), expected {expect.reconnect_mails}"
        )
    elif row.reconnect_mails:
        row.notes.append(f"{row.reconnect_mails} emails asking to reconnect a Page")
    per_album: Counter[str] = Counter()
    for mail in _album_mails(mails):
        match = ALBUM_LINK.search(mail.get("text") or "")
        if match is None or match.group(1) not in albums:
            row.problems.append(f"unexpected email {mail.get('subject')!r}")
            continue
        per_album[match.group(1)] += 1
    row.emails = sum(per_album.values())
    for album in albums.values():
        # One email per settle: the notifier's claim is per (album, settle_seq).
        expected = 0 if album.state == AlbumState.PUBLISHING else album.settle_seq
        if per_album[album.id] != expected:
            row.problems.append(
                f"album {album.id[:8]} ({album.state}): "
                f"{per_album[album.id]} emails, expected {expected}"
            )


def _check_posts(row: Row, system: System, albums: dict[str, AlbumView], expect: Expect) -> None:
    """An album sent as a post: one post on the Page attaching each of its photos once, its
    id recorded, and its email after it (checked with the emails)."""
    owner = {i.photo_id: album.id for album in albums.values() for i in album.images if i.photo_id}
    per_album: Counter[str] = Counter()
    attached: Counter[str] = Counter()
    for post in system.posts():
        mine = {owner.get(str(fbid)) for fbid in post["attached_media"]}
        if None in mine or len(mine) != 1:
            row.problems.append(
                f"post {post['id']} attaches photos of {len(mine)} albums or of none"
            )
            continue
        per_album[mine.pop() or ""] += 1
        attached.update(str(fbid) for fbid in post["attached_media"])
    row.posts = sum(per_album.values())
    for album in albums.values():
        if album.destination != "post":
            if expect.posts:
                row.problems.append(f"album {album.id[:8]} went to {album.destination}, not a post")
            continue
        uploaded = [i.photo_id for i in album.images if i.state == ImageState.UPLOADED]
        if uploaded and per_album[album.id] != 1:
            row.problems.append(f"album {album.id[:8]}: {per_album[album.id]} posts, expected 1")
        if uploaded and album.post_state != PostState.POSTED:
            row.problems.append(
                f"album {album.id[:8]}: post {album.post_state} ({album.post_error})"
            )
        twice = [p for p in uploaded if attached[p or ""] != 1]
        if twice:
            row.problems.append(f"album {album.id[:8]}: {len(twice)} photos not posted once")
    if row.posts:
        row.notes.append(f"{row.posts} multi-photo posts")


def _check_client_view(row: Row, work: Workload, expect: Expect) -> None:
    """What the user sees: one photo or failure per image and one email per settle of the
    albums the client was told were accepted, and nothing more."""
    if row.uploaded + row.failed != row.images:
        row.problems.append(
            f"{row.uploaded} photos and {row.failed} failures for the "
            f"{row.images} images the client published"
        )
    if row.emails != len(work.accepted) * expect.settles:
        row.problems.append(
            f"{row.emails} emails for the {len(work.accepted)} albums the client published"
        )


def _check_queues(row: Row, system: System, outbox_left: int) -> None:
    busy = _busy_queues(system)
    row.drained = not busy and outbox_left == 0
    if busy:
        row.problems.append(f"queues not drained: {busy}")
    if outbox_left:
        row.problems.append(f"{outbox_left} outbox messages never published")


def _check_dead_letters(
    row: Row, system: System, images: dict[tuple[str, int], Any], expect: Expect
) -> None:
    letters = DeadLetterQueue(system.amqp_url, topology.IMAGE_UPLOADS).browse()
    mail_letters = DeadLetterQueue(system.amqp_url, topology.ALBUM_SETTLED).browse()
    post_letters = DeadLetterQueue(system.amqp_url, topology.FEED_POSTS).browse()
    row.dead = len(letters) + len(mail_letters) + len(post_letters)
    for letter in mail_letters:
        row.problems.append(f"{NOTIFIER_DEAD}: {letter.reason}")
    for letter in post_letters:
        row.problems.append(f"{FEED_POSTS_DEAD}: {letter.reason}")
    per_image: Counter[tuple[str, int]] = Counter()
    poison = []
    for letter in letters:
        ref = _ref(letter)
        if ref in images:
            per_image[ref] += 1
        else:
            poison.append(letter)
    if len(poison) != expect.poison:
        reasons = Counter(letter.reason[:60] for letter in poison)
        row.problems.append(
            f"{len(poison)} poison dead letters, expected {expect.poison}: {dict(reasons)}"
        )
    for letter in poison:
        if not letter.headers.get("dead-reason"):
            row.problems.append(f"poison dead letter without a reason: {letter.reason}")
    failed = {ref for ref, image in images.items() if image.state == ImageState.FAILED}
    stale = 0
    for ref in set(per_image) - failed:
        if expect.settles > 1 and images[ref].state == ImageState.UPLOADED:
            stale += 1  # the album page retried it: its letter stays, stale, until purged
        else:
            row.problems.append(
                f"image {ref[1]} dead-lettered but {images[ref].state} in the store"
            )
    if stale:
        row.notes.append(f"{stale} stale dead letters of images retried and uploaded")
    for ref in failed - set(per_image):
        row.problems.append(f"image {ref[1]} failed without a dead letter")
    twice = sum(n - 1 for n in per_image.values() if n > 1)
    if twice:
        row.notes.append(f"{twice} images dead-lettered more than once")


def _ref(letter: DeadLetter) -> tuple[str, int] | None:
    album_id, image_id = letter.album_id, letter.image_id
    return (album_id, image_id) if album_id and image_id else None


def _check_failures(row: Row, images: dict[tuple[str, int], Any], expect: Expect) -> None:
    for ref, image in images.items():
        if image.state != ImageState.FAILED:
            if image.key in expect.refused_keys and image.state == ImageState.UPLOADED:
                row.problems.append(f"refused image {ref[1]} was uploaded")
            continue
        allowed = {
            "none": False,
            "exhausted": (image.error or "").startswith("gave up after"),
            "refused": image.key in expect.refused_keys and "324" in (image.error or ""),
        }[expect.failed]
        if not allowed:
            row.problems.append(f"image {ref[1]} failed: {image.error}")
    if expect.max_attempts is not None:
        worst = max((i.attempts for i in images.values()), default=0)
        if worst > expect.max_attempts:
            row.problems.append(
                f"an image took {worst} attempts (tight loop?), "
                f"at most {expect.max_attempts} expected"
            )


def _check_processes(row: Row, system: System) -> None:
    for name, alive in system.alive().items():
        if not alive:
            row.problems.append(f"{name} exited (see {name}.log)")
