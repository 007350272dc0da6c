"""Post an album sent as one multi-photo post: the uploader's second job, from a typed message
to an outcome, like `handler.ImageUploader` for the photos.

Exactly once: the post is claimed in the store (`Store.start_post`) before it is sent, and its
id recorded with the album's settled event (the email) before the message is acked. A post
whose answer was lost may have landed: the claim is kept until a post sent under it can no
longer land, and the next attempt reads the Page's recent posts for one attaching the album's
photos before it posts. Facts and sources: docs/facebook-destinations.md.

Page-wide stops (issue 10) pause the post rather than fail it: a Page found waiting for its
owner, a 190 (token refused) or a 368 (the Page blocked) answered to the post itself. The
post is recorded paused (`Store.pause_post`), its message acked, and the reconnect requests
it again (`Store.connect_page`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy.exc import SQLAlchemyError

from shared.adapters.graph_client import GraphError, graph_text
from shared.contracts import messages, outcomes, topology
from shared.contracts.outgoing import Outgoing
from shared.delivery.outbox import Outbox
from shared.policies.fate import Route
from shared.policies.retry_policy import Failure, FailureKind, RetryPolicy
from shared.store import PageState, Store

from .failures import PAGE_BLOCKED, TOKEN_REFUSED, classify, may_have_landed
from .handler import Policy
from .pages import BLOCKED_REASON, RECONNECT_REASON, PageClient, PagePaused

log = logging.getLogger(__name__)

QUEUE = topology.FEED_POSTS
#: How many of the Page's newest posts are read to find an unrecorded one: an uncertain post
#: is looked for minutes after it was sent, not days.
_POSTS_LOOKED_AT = 100
#: Graph's codes that stop the whole Page: its token refused, the Page blocked.
#: A post whose Page was reconnected under it goes again this soon (no attempt spent).
_RECONNECTED_WAIT_S = 1.0


class PostingGraph(Protocol):
    def create_post(self, message: str, photo_ids: Sequence[str]) -> str: ...
    def list_posts(self) -> Iterable[dict[str, Any]]: ...


class FeedPoster:
    def __init__(
        self, store: Store, outbox: Outbox, graph_for: Callable[[str], PageClient], policy: Policy
    ) -> None:
        """`graph_for(album_id)`: the album's Page and its client, with its token (raises
        PagePaused while the Page waits for its owner)."""
        self._store = store
        self._outbox = outbox
        self._graph_for = graph_for
        self._policy = policy

    def route(self) -> Route[messages.FeedPostRequested]:
        """The feed-post queue: the same retry tiers, dead letters and give-up as the photos."""
        return Route(
            QUEUE,
            messages.FeedPostRequested,
            self,
            RetryPolicy(
                self._policy.retry_delays,
                self._policy.max_attempts,
                self._policy.throttle_give_up_s,
            ),
            on_give_up=self.give_up,
        )

    def __call__(self, message: messages.FeedPostRequested, attempt: int) -> None:
        stale = timedelta(seconds=self._policy.album_claim_stale_s)
        try:
            job = self._store.start_post(message.album_id, message.settle_seq, stale)
        except LookupError as exc:
            raise messages.PoisonMessage(str(exc)) from None
        if not job.taken:
            if job.busy_for:
                raise outcomes.Busy(job.busy_for, "another attempt may be posting")
            log.info(
                "album %s: post of settle %s already %s; acking",
                message.album_id,
                message.settle_seq,
                job.state or "superseded",
            )
            return
        try:
            page = self._graph_for(message.album_id)
        except PagePaused as exc:
            self._pause(message, exc.reason, None)
            return
        try:
            self._publish(
                page.client,
                message,
                post_message(job.title, job.description),
                job.photo_ids,
                attempt > 1 or job.taken_over,
            )
        except outcomes.Outcome as outcome:
            # Either Graph call may meet the Page's stop: the look with the token too.
            if not self._page_wide(message, outcome.__cause__, page.sealed):
                raise

    def _publish(
        self,
        graph: PostingGraph,
        message: messages.FeedPostRequested,
        text: str,
        photo_ids: Sequence[str],
        look_first: bool,
    ) -> None:
        """Post the album (unless an earlier attempt's post is found) and record the post."""
        found = self._look_for_post(graph, message.album_id, photo_ids) if look_first else None
        if found is not None:
            log.info("album %s was already posted as %s", message.album_id, found)
            post_id = found
        else:
            post_id = self._post(graph, message.album_id, text, photo_ids)
            log.info(
                "album %s posted as %s with %d photos", message.album_id, post_id, len(photo_ids)
            )
        self._outbox.send_rows(
            self._store.record_posted(message.album_id, message.settle_seq, post_id)
        )

    def _page_wide(
        self, message: messages.FeedPostRequested, exc: BaseException | None, sealed: bytes | None
    ) -> bool:
        """A 190 or 368 answered to the post is its Page's, not the post's: the post pauses
        (a 368 marks the Page blocked first, as for a photo). False (the failure stands) for
        other failures and for the single-tenant Page, which only its operator can fix."""
        code = exc.code if isinstance(exc, GraphError) else None
        if code not in (TOKEN_REFUSED, PAGE_BLOCKED):
            return False
        owner = self._store.album_page(message.album_id)
        if owner is None or owner[1] is None:
            return False
        if code == PAGE_BLOCKED:
            self._store.set_page_state(owner[0], owner[1], PageState.BLOCKED)
            self._pause(message, BLOCKED_REASON, None)
        else:
            self._pause(message, RECONNECT_REASON, sealed)
        log.warning("album %s: its post paused: the Page answered %s", message.album_id, code)
        return True

    def _pause(
        self, message: messages.FeedPostRequested, reason: str, refused: bytes | None
    ) -> None:
        """Pause the post till its Page is reconnected, or, if the owner reconnected since
        (the store tells), try again shortly with the new token, no attempt spent."""
        if not self._store.pause_post(message.album_id, message.settle_seq, reason, refused):
            raise outcomes.Busy(_RECONNECTED_WAIT_S, "its Facebook Page was reconnected meanwhile")
        log.info("album %s: its post paused: %s", message.album_id, reason)

    def _post(self, graph: PostingGraph, album_id: str, text: str, photo_ids: Sequence[str]) -> str:
        try:
            return graph.create_post(text, photo_ids)
        except SQLAlchemyError:
            raise
        except Exception as exc:
            if not may_have_landed(exc):  # refused: the next attempt need not wait or look
                self._store.release_post_claim(album_id)
            raise outcomes.of(post_failure(exc)) from exc

    def _look_for_post(
        self, graph: PostingGraph, album_id: str, photo_ids: Sequence[str]
    ) -> str | None:
        """`_find_post`, its failure classified like any Graph call's (a throttle waits as
        Facebook asks); nothing was posted by this attempt, so its claim is handed back."""
        try:
            return self._find_post(graph, photo_ids)
        except SQLAlchemyError:
            raise
        except Exception as exc:
            self._store.release_post_claim(album_id)
            raise outcomes.of(classify(exc)) from exc

    @staticmethod
    def _find_post(graph: PostingGraph, photo_ids: Sequence[str]) -> str | None:
        """The Page's post attaching any of these photos (a photo is attached once)."""
        wanted = set(photo_ids)
        for n, post in enumerate(graph.list_posts()):
            if n >= _POSTS_LOOKED_AT:
                return None
            if wanted & attached_photos(post):
                return str(post["id"])
        return None

    def give_up(
        self, message: messages.FeedPostRequested, failure: Failure, letter: Outgoing
    ) -> None:
        """The route's `on_give_up`: the failure, its dead letter and the album's settle (its
        email says the post failed, and why) in one transaction."""
        log.warning("album %s: the post failed for good: %s", message.album_id, failure.reason)
        self._outbox.send_rows(
            self._store.record_post_failed(
                message.album_id, message.settle_seq, failure.reason, letter
            )
        )


def post_message(title: str, description: str) -> str:
    """A post's one text: the album's title, then its description below a blank line (what
    a created album shows as its name and its message)."""
    return f"{title}\n\n{description}" if description else title


def post_failure(exc: BaseException) -> Failure:
    """As a photo's failure, except a refused post's reason says what the user can do: the
    usual cause is that Facebook dropped the unpublished photos (it keeps them about a day)."""
    failure = classify(exc)
    if isinstance(exc, GraphError) and exc.code == 100:
        return Failure(
            FailureKind.PERMANENT,
            f"Facebook refused the post ({graph_text(exc)}): its unpublished "
            "photos have probably expired (Facebook keeps them about 24 hours); "
            "publish the album again",
            100,
        )
    return failure


def attached_photos(post: Mapping[str, Any]) -> set[str]:
    """The photo ids a Graph post's `attachments` (and their subattachments) point at."""
    found: set[str] = set()
    for attachment in _data(post.get("attachments")):
        for item in [attachment, *_data(attachment.get("subattachments"))]:
            target = item.get("target")
            if isinstance(target, dict) and target.get("id"):
                found.add(str(target["id"]))
    return found


def _data(edge: Any) -> list[dict[str, Any]]:
    data = edge.get("data") if isinstance(edge, dict) else None
    return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []
