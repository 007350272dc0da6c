"""Upload one image: the uploader's handler, from a typed message to an outcome.

Decides nothing about transport: it records each step in the store and returns (ack) or raises
an outcome (`shared.contracts.outcomes`); the consumer runtime (`shared.policies.fate`) turns that
into a retry copy or a dead letter. Its route's hooks record a retry, and an image that failed for
good with its dead letter and the album's settled event in one transaction (the outbox sends them).
"""

from __future__ import annotations

import contextlib
import logging
import mimetypes
import posixpath
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from services.uploader.throttle_gate import ThrottleGate
from shared.adapters.graph_client import GraphClient, GraphError
from shared.contracts import fencing, messages, outcomes, topology
from shared.contracts.outgoing import Outgoing
from shared.delivery.outbox import Outbox
from shared.policies import fate, retry_policy
from shared.policies.fate import Route
from shared.policies.retry_policy import Failure, FailureKind, RetryLater, RetryPolicy
from shared.store import Ended, FbAlbumClaim, Start, Store
from shared.store.tables import utcnow

from . import photo_limits, photo_match
from .album_photos import AlbumPhotos
from .circuit_breaker import CircuitBreaker
from .failures import (
    PAGE_BLOCKED,
    TOKEN_REFUSED,
    AlbumBeingCreated,
    DuplicateNotFound,
    album_creation_refused,
    classify,
    may_have_landed,
)
from .pages import RECONNECT_REASON, PagePaused, Pages
from .photo_match import Photo
from .source import Source

log = logging.getLogger(__name__)

QUEUE = topology.IMAGE_UPLOADS
#: How long an image waits for another worker that is creating its album on Facebook.
_ALBUM_WAIT_S = 30.0
#: How often it looks in the store meanwhile: creating an album takes tens of milliseconds, so
#: soon at first (another process's images start as soon as it is there), then less often.
#: One thread of a process looks; the process's other images wait for what it learns.
_ALBUM_LOOKS_S = (0.01, 0.02, 0.04, 0.08, 0.2)
#: An attempt holds its image this long, renewed a third of the way: a dead uploader's lapses.
_LEASE = timedelta(seconds=30)
#: Added to the Graph timeout before a dead attempt's photo can be assumed not to arrive.
_IN_FLIGHT_MARGIN_S = 5.0
#: Graph's code for a duplicate post: it has the photo already.
_DUPLICATE_POST = 506
#: Graph's codes that stop a whole Page, not one photo: its token is no longer accepted, and
#: Facebook blocked it for policy reasons (docs/facebook-login.md).
#: How often an image looks up its Page when a reconnect lands between the look and the pause.
_PAGE_LOOKS = 3
#: An image whose Page was reconnected under it goes again this soon (no attempt spent).
_RECONNECTED_WAIT_S = 1.0
#: Graph failures that say the API itself is unwell (not this request): they trip the breaker.
_BROAD_FAILURES = (FailureKind.TRANSIENT, FailureKind.THROTTLED)


@dataclass(frozen=True)
class Policy:
    retry_delays: tuple[int, ...]
    max_attempts: int
    #: How long an upload request may take (the Graph client's read timeout): a photo sent by
    #: an uploader that died may reach Facebook until then.
    graph_timeout_s: float = 120.0
    #: Added to the Graph timeout before a create sent under a claim can no longer land: the
    #: connect timeout (5 s) and time for Facebook to finish what it received.
    album_claim_margin_s: float = 10.0
    #: A throttle without a wait hint gives up after it lasted this long.
    throttle_give_up_s: float = retry_policy.DEFAULT_THROTTLE_GIVE_UP_S

    @property
    def album_claim_stale_s(self) -> float:
        """A claim to create the Facebook album this old was made by a worker that died or
        whose create ended without an answer, and that create can no longer land: another
        may take it over (after looking for the album by title and time). Shorter, a slow
        create would be taken over and two albums made."""
        return self.graph_timeout_s + self.album_claim_margin_s

    @property
    def read_back_ttl_s(self) -> float:
        """How long one listing of a Facebook album serves its retrying images: below the
        shortest retry delay (see `album_photos`)."""
        return min(self.retry_delays, default=0) / 2


class ImageUploader:
    def __init__(
        self,
        store: Store,
        outbox: Outbox,
        graph: GraphClient | None,
        s3: Any,
        bucket: str,
        policy: Policy,
        breaker: CircuitBreaker | None = None,
        gate: ThrottleGate | None = None,
        pages: Pages | None = None,
    ) -> None:
        """`pages` gives each album its own Page's client (a connected Page); without it,
        every album goes through `graph`."""
        if graph is None and pages is None:
            raise ValueError("an uploader needs a Graph client or its Pages")
        self._pages = pages
        self._default_graph = graph
        # The client of the album this thread is working on (its Page's token).
        self._local = threading.local()
        self._breaker = breaker or CircuitBreaker()
        self._gate = gate
        #: Held by the one thread of this process deciding an album's Facebook album.
        self._deciding: dict[str, threading.Lock] = {}
        #: Each album's Facebook album or post, as recorded in the store (`_learn_fb_album`).
        self._recorded: dict[str, FbAlbumClaim] = {}
        self._leases: dict[int, int] = {}  # image id -> the attempt this process runs
        #: The attempt this worker thread runs, for the route's hooks that record its end.
        self._running = threading.local()
        self._leases_lock = threading.Lock()
        self._renewer: threading.Thread | None = None
        self._events_lock = threading.Lock()
        self._store = store
        self._outbox = outbox
        self._s3 = s3
        self._bucket = bucket
        self._policy = policy
        self._album_photos = AlbumPhotos(
            lambda album: self._graph.list_album_photos(album), policy.read_back_ttl_s
        )

    @property
    def _graph(self) -> GraphClient:
        graph: GraphClient | None = getattr(self._local, "graph", None) or self._default_graph
        assert graph is not None, "no Page chosen for this thread's album"
        return graph

    @property
    def policy(self) -> Policy:
        return self._policy

    def route(self) -> Route[messages.ImageUploadRequested]:
        """The uploader's work queue, as the consumer runtime runs it."""
        return Route(
            QUEUE,
            messages.ImageUploadRequested,
            self,
            RetryPolicy(
                self._policy.retry_delays,
                self._policy.max_attempts,
                self._policy.throttle_give_up_s,
            ),
            on_retry=self.record_retry,
            on_give_up=self.give_up,
        )

    def __call__(self, message: messages.ImageUploadRequested, attempt: int) -> None:
        # This thread's attempt, for the route's hooks: none until one is taken (a hook run
        # for a wait before it must not act for the previous message's attempt).
        self._running.attempt = None
        taken = self._take(message)
        if isinstance(taken, Ended):
            log.info("image %s already ended; acking the duplicate", message.image_id)
            return
        start = taken or self._start_checked(message)
        if start is None:
            return
        self._running.attempt = start.attempt
        self._attempt(message, start)

    def _take(self, message: messages.ImageUploadRequested) -> Start | Ended | None:
        """The usual start, one statement (`Store.take_image_unless_ended`): the image's row
        checked against the message, its Page and the app not held, the attempt taken.
        `Ended`: the image ended already (a redelivery or replay), nothing to decide. None:
        something needs a decision (a mismatch, a paused or held Page, a busy or stale image,
        a turn not yet held): `_start_checked` takes the long way, which says why."""
        # Before taking the image: an attempt waiting for the breaker holds no lease or claim.
        self._breaker.wait_while_open()
        page_id = None
        if self._pages is not None:
            try:
                page = self._pages.client_for(message.album_id)
            except (PagePaused, LookupError):
                return None
            self._local.graph, self._local.sealed = page.client, page.sealed
            page_id = str(page.page_id)
        delivery = fate.current_delivery()
        taken = self._store.take_image_unless_ended(
            message.image_id,
            message.album_id,
            message.key,
            _LEASE,
            in_flight_window(self._policy.graph_timeout_s),
            fencing.fence_of(delivery.headers) if delivery else None,
            self._gate.scopes(page_id) if self._gate is not None else (),
        )
        if taken is None or isinstance(taken, Ended):
            return taken
        return Start(
            taken.attempt,
            0.0,
            fb_album=self._known_fb_album(message.album_id),
            caption=taken.caption,
            first_attempt_at=taken.first_attempt_at,
            size=taken.size,
            key=taken.key,
        )

    def _start_checked(self, message: messages.ImageUploadRequested) -> Start | None:
        """The long way to an attempt, each check on its own: the attempt taken, or None when
        the image was paused for its Page or is not to be tried now (`_not_now`)."""
        # Before anything acts on the message's album or image: only the store's say.
        self._check_against_store(message)
        self._breaker.wait_while_open()
        page_id = None
        if self._pages is not None:
            page_id = self._use_album_page(message)
            if page_id is None:
                return None
        if self._gate is not None:  # a Page or app held for its usage: nothing is streamed
            self._gate.check(page_id)
        delivery = fate.current_delivery()
        try:
            start = self._store.start_attempt(
                message.image_id,
                _LEASE,
                in_flight_window(self._policy.graph_timeout_s),
                timedelta(seconds=self._policy.album_claim_stale_s),
                fencing.fence_of(delivery.headers) if delivery else None,
            )
        except LookupError as exc:
            raise messages.PoisonMessage(str(exc)) from None
        if start.attempt is None:
            self._not_now(message, start)
            return None
        return start

    def _check_against_store(self, message: messages.ImageUploadRequested) -> None:
        """A message naming another album or object than its image's stored ones is
        dead-lettered (poison): whoever may publish could otherwise post any object of the
        bucket into any album. The image is left as it is, so a forged message fails nobody's
        image; the object sent is always the stored one (`Start.key`)."""
        stored = self._store.stored_image(message.image_id)
        if stored is None:
            raise messages.PoisonMessage(f"image {message.image_id} is not in the store")
        differs = [
            name
            for name, same in (
                ("album", stored.album_id == message.album_id),
                ("key", stored.key == message.key),
            )
            if not same
        ]
        if differs:
            verb = "differs" if len(differs) == 1 else "differ"
            raise messages.MessageMismatch("image", f"{' and '.join(differs)} {verb}")

    def _use_album_page(self, message: messages.ImageUploadRequested) -> str | None:
        """Point this thread at the album's Page and return its id; None (the image paused,
        no attempt spent) while that Page waits for its owner to reconnect it."""
        assert self._pages is not None
        for _ in range(_PAGE_LOOKS):
            try:
                page = self._pages.client_for(message.album_id)
            except PagePaused as exc:
                if self._store.pause_for_page(
                    message.image_id, exc.reason, None, give_back_attempt=False
                ):
                    log.info("image %s paused: %s", message.image_id, exc.reason)
                    return None
                continue  # reconnected since it looked (nothing to resume it): look again
            except LookupError as exc:
                raise messages.PoisonMessage(str(exc)) from None
            self._local.graph, self._local.sealed = page.client, page.sealed
            return str(page.page_id)
        raise outcomes.Busy(_RECONNECTED_WAIT_S, "its Facebook Page is being reconnected")

    def _page_wide(
        self, message: messages.ImageUploadRequested, failure: Failure, attempt: int
    ) -> bool:
        """A failure that is the Page's, not the image's: 190 pauses the image (its attempt
        given back) until the owner reconnects; 368 pauses the Page's other albums and lets
        this album stop (give_up). True if the image was paused."""
        if self._pages is None or not self._pages.is_connected(message.album_id):
            return False  # the single-tenant Page: only its operator can fix it
        if failure.code == TOKEN_REFUSED:
            if not self._store.pause_for_page(
                message.image_id,
                RECONNECT_REASON,
                failure.code,
                give_back_attempt=True,
                refused=getattr(self._local, "sealed", None),
            ):
                # The owner reconnected while the request with the old token was on its way:
                # the image goes again with the new one (the attempt was handed back).
                raise outcomes.Busy(
                    _RECONNECTED_WAIT_S, "its Facebook Page was reconnected meanwhile"
                ).copy_with({fencing.FENCE_HEADER: attempt})
            log.warning(
                "image %s paused: the Page's token was refused (code 190)", message.image_id
            )
            return True
        if failure.code == PAGE_BLOCKED:
            self._pages.blocked(message.album_id)
        return False

    def _not_now(self, message: messages.ImageUploadRequested, start: Start) -> None:
        """The image was not taken: it ended already, a newer attempt took over from this
        copy (a stale duplicate), or another attempt may be in flight."""
        if start.stale:
            log.info("image %s: a stale duplicate of an older attempt; acking it", message.image_id)
            return
        if not start.busy_for:
            log.info("image %s already ended; acking the duplicate", message.image_id)
            return
        # Another attempt holds it (a duplicate taken side by side), or one that died may
        # still reach Facebook: look again once it cannot, without spending the budget. The
        # copy keeps this delivery's fencing number: it is no newer than what it waits for.
        raise outcomes.Busy(start.busy_for, "another attempt may be in flight")

    def _attempt(self, message: messages.ImageUploadRequested, start: Start) -> None:
        """Send the image (the attempt is taken) and record how it went."""
        assert start.attempt is not None
        log.info("image %s upload started (attempt %d)", message.image_id, start.attempt)
        with self._leased(message.image_id, start.attempt):
            try:
                photo_id = self._upload(message, start)
            except outcomes.Outcome as decided:
                # A reconciliation that must wait, or cannot tell: its copy follows this
                # attempt, as a classified failure's does.
                raise decided.copy_with({fencing.FENCE_HEADER: start.attempt}) from None
            except SQLAlchemyError:
                # The store failed, not the image: the runtime delays the message without
                # spending its budget. Classified, it would be "internal error" and fail the
                # image for good.
                raise
            except Exception as exc:  # every failure is classified; unknown ones are permanent
                failure = classify(exc)
                if isinstance(exc, GraphError):
                    self._breaker.record(ok=failure.kind not in _BROAD_FAILURES)
                if self._page_wide(message, failure, start.attempt):
                    return
                # The copy follows this attempt: an older copy is then a stale duplicate.
                raise outcomes.of(failure).copy_with({fencing.FENCE_HEADER: start.attempt}) from exc
        self._breaker.record(ok=True)
        self._outbox.send_rows(
            self._store.record_uploaded(
                message.image_id, photo_id, attempt=start.attempt, album_id=message.album_id
            )
        )
        log.info("image %s uploaded as photo %s", message.image_id, photo_id)

    def _upload(self, message: messages.ImageUploadRequested, start: Start) -> str:
        fb_album = self._fb_album(
            message.album_id, lambda: self._facts(message.album_id, start), start.fb_album
        )
        if fb_album is None:
            # Unpublished photos are listed nowhere, so an earlier attempt's cannot be looked
            # for: one that landed unrecorded stays unattached (Facebook drops it in a day);
            # the post attaches only the recorded id, so no photo is posted twice.
            return self._send(None, start)
        # The object is opened now only when its size must be read (the store does not hold
        # it): from the first bytes the send streams, rather than a request of its own.
        source = None if start.size else self._open(start)
        try:
            size = start.size or (source.size() if source else None)
            if start.attempt != 1:
                # An earlier attempt may have reached Facebook and died before recording the
                # photo id (a timeout, a crash): the Graph API has no idempotency key, so look.
                sent = self._find_sent(fb_album, message, start, size)
                if sent is not None:
                    log.info("image %s was already on Facebook as %s", message.image_id, sent)
                    return sent
            # Recorded before the send: from now on a photo may land (rivals wait for it), and
            # the size recognises it later.
            self._store.record_sending(message.image_id, None if start.size else size)
            try:
                photo_id = self._send(fb_album, start, source)
            except GraphError as exc:
                if exc.code != _DUPLICATE_POST:
                    raise
                return self._existing_duplicate(fb_album, message, start, size)
        finally:
            if source is not None:
                source.close()
        self._album_photos.add(fb_album, Photo(photo_id, start.caption, utcnow(), size))
        return photo_id

    def _open(self, start: Start) -> Source:
        """The image's stored object, its size and type checked from the GET's headers,
        before a byte of the body is read or sent."""
        source = Source(self._s3, self._bucket, start.key)
        try:
            photo_limits.check(source.length, source.content_type, start.key)
        except BaseException:
            source.close()
            raise
        return source

    def _send(self, fb_album: str | None, start: Start, source: Source | None = None) -> str:
        """The image's stored object (`source`, already open, else opened now) into
        `fb_album`, or (None) to the Page unpublished, for the album's post."""
        opened = source or self._open(start)
        filename = posixpath.basename(start.key) or "image"
        content_type = opened.content_type or mimetypes.guess_type(filename)[0]
        try:
            return self._graph.upload_photo(
                fb_album or self._graph.page_id,
                opened,  # type: ignore[arg-type]  # a stream: read() is all it needs
                opened.length,
                filename,
                content_type or "application/octet-stream",
                caption=start.caption,
                published=fb_album is not None,
            )
        finally:
            if source is None:
                opened.close()

    def _existing_duplicate(
        self,
        fb_album: str,
        message: messages.ImageUploadRequested,
        start: Start,
        size: tuple[int, int] | None,
    ) -> str:
        """Facebook refused the photo as a duplicate post: it has it already (an earlier
        attempt's, listed late), so read the album back once more."""
        sent = self._find_sent(fb_album, message, start, size, fresh=True)
        if sent is None:
            raise DuplicateNotFound(message.image_id)
        log.info("image %s was a duplicate on Facebook, found as %s", message.image_id, sent)
        return sent

    def _find_sent(
        self,
        fb_album: str,
        message: messages.ImageUploadRequested,
        start: Start,
        size: tuple[int, int] | None,
        fresh: bool = False,
    ) -> str | None:
        """The photo an earlier attempt sent, told by caption, size and time
        (`photo_match`); waits (Busy) or fails the image when that cannot be told."""
        photos = self._album_photos.photos(fb_album, fresh)
        # The ledger read after the listing: an image whose photo the listing shows recorded
        # its send before the photo landed, so it is in this ledger (a rival, or claimed).
        # Read before, an image sending meanwhile would be missing, and its photo adopted.
        ledger = self._store.album_photo_ledger(
            message.album_id, in_flight_window(self._policy.graph_timeout_s)
        )
        if not ledger.began_sending(message.image_id):
            return None  # no attempt of this image reached the send: nothing to look for
        me = photo_match.Sent(message.image_id, start.caption, size, start.first_attempt_at)
        rivals = [
            photo_match.Sent(u.image_id, u.caption, u.size, u.first_attempt_at)
            for u in ledger.unrecorded
            if u.image_id != message.image_id
        ]
        in_flight_s = max(
            (u.in_flight_s for u in ledger.unrecorded if u.image_id != message.image_id),
            default=0.0,
        )
        found = photo_match.match(me, photos, ledger.claimed, rivals, in_flight_s)
        if isinstance(found, photo_match.Found):
            return found.photo_id
        if isinstance(found, photo_match.Wait):
            # This attempt sent nothing: not in flight, or two waiting images block each other.
            self._store.release_attempt(message.image_id)
            raise outcomes.Busy(found.seconds, found.reason)
        if isinstance(found, photo_match.Unsure):
            raise outcomes.Permanent(found.reason)
        return None

    def _facts(self, album_id: str, start: Start) -> _AlbumFacts:
        """The album's facts: read with the attempt by the long way (the album's creation
        time is never empty), else read now (only an image that must create the album or
        look for it needs them)."""
        if start.album_created_at is None:
            start = self._store.album_facts(album_id)
        return _AlbumFacts.of(start)

    def _known_fb_album(self, album_id: str) -> FbAlbumClaim | None:
        """The album's Facebook album (or its post) as the store recorded it for this process:
        once recorded it never changes, so this process's next images need not claim. None:
        not known here yet."""
        with self._events_lock:
            return self._recorded.get(album_id)

    def _learn_fb_album(self, album_id: str, claim: FbAlbumClaim) -> None:
        """Keep the store's record of the album's Facebook album or post, if it has one."""
        if claim.post or claim.fb_album_id:
            with self._events_lock:
                if len(self._recorded) > 1000:  # old albums' images are done with
                    self._recorded.clear()
                self._recorded[album_id] = FbAlbumClaim(
                    claim.fb_album_id, False, False, post=claim.post
                )

    def _fb_album(
        self, album_id: str, facts_of: Callable[[], _AlbumFacts], claim: FbAlbumClaim | None
    ) -> str | None:
        """The album's Facebook album, created once however many images ask at the same time;
        None when the album goes out as one multi-photo post.

        `claim` is the one taken with the attempt; while another worker creates the album,
        this one looks again. When that worker's create ended without an answer, the album
        may exist unrecorded: it is looked for once (`_find_fb_album`), and adopted if there.

        One thread of this process claims and looks at a time; the process's other images of
        the album wait for it and take what it learned, rather than each claiming in the
        store (on SQLite every claim queues on the one writer, ahead of the decision)."""
        deadline = time.monotonic() + _ALBUM_WAIT_S
        claim = claim or self._known_fb_album(album_id)
        if claim is not None and (claim.mine or claim.post or claim.fb_album_id):
            return self._decide_fb_album(album_id, facts_of, claim, deadline)
        lock = self._deciding_lock(album_id)
        if not lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise AlbumBeingCreated(album_id)
        try:
            return self._decide_fb_album(
                album_id, facts_of, self._known_fb_album(album_id), deadline
            )
        finally:
            lock.release()

    def _decide_fb_album(
        self,
        album_id: str,
        facts_of: Callable[[], _AlbumFacts],
        claim: FbAlbumClaim | None,
        deadline: float,
    ) -> str | None:
        stale = timedelta(seconds=self._policy.album_claim_stale_s)
        looks = iter(_ALBUM_LOOKS_S)
        looked = False
        while True:
            claim = claim or self._store.claim_fb_album(album_id, stale)
            self._learn_fb_album(album_id, claim)
            if claim.post:
                return None
            if claim.fb_album_id:
                return claim.fb_album_id
            if claim.mine:
                return self._create_fb_album(album_id, facts_of(), look_first=claim.taken_over)
            if claim.uncertain and not looked:
                looked = True
                found = self._find_fb_album(facts_of())
                if found:
                    return self._album_created(album_id, found)
            if time.monotonic() > deadline:
                raise AlbumBeingCreated(album_id)
            # Another worker is on it (another process: this process's own wait on the lock).
            time.sleep(next(looks, _ALBUM_LOOKS_S[-1]))
            claim = None

    def _create_fb_album(self, album_id: str, facts: _AlbumFacts, look_first: bool) -> str | None:
        try:
            # A worker that died between creating the album and recording it, or whose
            # create got no answer, may have left it behind, recognisable by its name and
            # time (`_find_fb_album`): adopt it rather than make another.
            found = self._find_fb_album(facts) if look_first else None
        except AlbumBeingCreated:
            # Two unrecorded albums could be it: keep the claim uncertain (nobody creates)
            # until the other album records its own.
            self._store.release_fb_album_claim(album_id, uncertain=True)
            raise
        except Exception:
            self._store.release_fb_album_claim(album_id)
            raise
        if found:
            return self._album_created(album_id, found)
        try:
            fb_album = self._graph.create_album(facts.title, message=facts.description or None)
        except Exception as exc:
            refused = album_creation_refused(exc)
            if refused is not None:
                return self._fall_back_to_post(album_id, refused)
            uncertain = may_have_landed(exc)
            self._store.release_fb_album_claim(album_id, uncertain=uncertain)
            if uncertain:
                log.warning(
                    "album %s: the Facebook album may have been created (%s); it "
                    "will be looked for before another is made",
                    album_id,
                    exc,
                )
            raise
        log.info("album %s created on Facebook as %s", album_id, fb_album)
        return self._album_created(album_id, fb_album)

    def _fall_back_to_post(self, album_id: str, reason: str) -> str | None:
        """Facebook will not create albums: the album becomes one multi-photo post (no photo
        was sent yet: every image waits for the album), and says why; None. Unless another
        worker's create was recorded first (a claim taken over): then that album, kept."""
        log.warning("album %s: %s", album_id, reason)
        recorded = self._store.switch_to_post(album_id, reason)
        self._learn_fb_album(album_id, FbAlbumClaim(recorded, False, False, post=not recorded))
        return recorded

    def _album_created(self, album_id: str, fb_album: str) -> str:
        """Record the album's Facebook album, or adopt the one recorded first (a create that
        landed after its claim was taken over loses: its album stays empty), for this
        process's threads waiting for it too."""
        recorded = self._store.set_fb_album(album_id, fb_album)
        if recorded != fb_album:
            log.warning(
                "album %s: Facebook album %s was recorded first; %s stays empty "
                "(a stray: delete it on Facebook)",
                album_id,
                recorded,
                fb_album,
            )
        self._learn_fb_album(album_id, FbAlbumClaim(recorded, False, False))
        return recorded

    def _deciding_lock(self, album_id: str) -> threading.Lock:
        with self._events_lock:
            # Old albums' locks are no longer waited on; one dropped while held only lets a
            # second thread claim in the store, which decides as it always does.
            if len(self._deciding) > 1000:
                self._deciding.clear()
            return self._deciding.setdefault(album_id, threading.Lock())

    def _find_fb_album(self, facts: _AlbumFacts) -> str | None:
        """The Facebook album an uncertain create made: named as ours, created since our album
        was (less the clock margin), recorded for none of our albums. Two such: raises
        AlbumBeingCreated (the other's owner records it soon); none: None."""
        since = (facts.created_at - photo_match.CLOCK_SKEW) if facts.created_at else None
        named = [
            str(a["id"])
            for a in self._graph.list_albums()
            if a.get("name") == facts.title and (since is None or _created_since(a, since))
        ]
        free = [a for a in named if a not in self._store.fb_albums_recorded(named)]
        if len(free) > 1:
            raise AlbumBeingCreated(facts.title)
        return free[0] if free else None

    @contextlib.contextmanager
    def _leased(self, image_id: int, attempt: int) -> Iterator[None]:
        """Keep the image's lease renewed while this attempt runs (and only this attempt's)."""
        with self._leases_lock:
            self._leases[image_id] = attempt
            if self._renewer is None:
                self._renewer = threading.Thread(
                    target=self._renew, daemon=True, name="lease-renewer"
                )
                self._renewer.start()
        try:
            yield
        finally:
            with self._leases_lock:
                self._leases.pop(image_id, None)

    def _renew(self) -> None:
        while True:
            time.sleep(_LEASE.total_seconds() / 3)
            with self._leases_lock:
                held = dict(self._leases)
            try:
                self._store.renew_leases(held, _LEASE)
            except Exception:  # the store may be down a moment; the next round tries again
                log.exception("could not renew upload leases")

    def record_retry(
        self, message: messages.ImageUploadRequested, failure: Failure, step: RetryLater
    ) -> None:
        """The route's `on_retry`: the album page shows when the image is tried next (by the
        database's clock); only if the image is still in this thread's attempt. An attempt in
        doubt keeps its in-flight window."""
        # A throttle's wait may span several hops: the page shows when the whole wait ends.
        wait_s = step.hold_s if step.hold_s is not None else step.delay_s
        attempt = getattr(self._running, "attempt", None)
        # No attempt taken (held before it, for the Page's usage): the wait is shown only on
        # an image that is waiting, never on one another attempt is uploading.
        shown = self._store.record_retrying(
            message.image_id,
            failure.reason,
            failure.code,
            timedelta(seconds=wait_s),
            attempt=attempt,
            in_doubt=failure.in_doubt,
            waiting_only=attempt is None,
            in_flight_window=in_flight_window(self._policy.graph_timeout_s),
        )
        if shown.total_seconds() > wait_s + 1:  # the runtime's own line names the copy's tier
            log.info(
                "image %s: its request may still reach Facebook; the next attempt starts once "
                "it cannot, in %.0f s (its copy looks in earlier)",
                message.image_id,
                shown.total_seconds(),
            )

    def give_up(
        self, message: messages.ImageUploadRequested, failure: Failure, letter: Outgoing
    ) -> None:
        """The route's `on_give_up`: the failure, its dead letter and the album's settle (if it
        ended the album) in one transaction; the outbox sends the letter and the settle."""
        log.warning("image %s failed for good: %s", message.image_id, failure.reason)
        self._outbox.send_rows(
            self._store.record_failed(
                message.image_id,
                failure.reason,
                failure.code,
                letter,
                stop_album=failure.kind is FailureKind.AUTH or failure.code == PAGE_BLOCKED,
                attempt=getattr(self._running, "attempt", None),
            )
        )


def in_flight_window(graph_timeout_s: float) -> timedelta:
    """How long after an attempt started its request may still reach Facebook."""
    return timedelta(seconds=graph_timeout_s + _IN_FLIGHT_MARGIN_S)


@dataclass(frozen=True)
class _AlbumFacts:
    """What the Facebook album is created with (the user's words only), and since when it may
    exist (our album's creation)."""

    title: str
    description: str
    created_at: datetime | None

    @classmethod
    def of(cls, start: Start) -> _AlbumFacts:
        return cls(start.album_title, start.album_description, start.album_created_at)


def _created_since(album: dict[str, Any], since: datetime) -> bool:
    created = photo_match.parse_graph_time(album.get("created_time"))
    return created is None or created >= since
