"""Post an album sent as one multi-photo post: the uploader's second job, from a typed message
to an outcome, like `handler.ImageUploader` for the photos.

Exactly once: the post is claimed in the store (`Store.start_post`) before it is sent, and its
id recorded with the album's settled event (the email) before the message is acked. A post
whose answer was lost may have landed: the claim is kept until a post sent under it can no
longer land, and the next attempt reads the Page's recent posts for one attaching the album's
photos before it posts. Facts and sources: docs/facebook-destinations.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy.exc import SQLAlchemyError

from shared import messages, outcomes, topology
from shared.fate import Route
from shared.outbox import Outbox
from shared.outgoing import Outgoing
from shared.retry_policy import Failure, FailureKind, RetryPolicy
from shared.store import Store

from .failures import classify, graph_text, may_have_landed
from .graph_client import GraphError
from .handler import Policy
from .pages import PagePaused

log = logging.getLogger(__name__)

QUEUE = topology.FEED_POSTS
#: How many of the Page's newest posts are read to find an unrecorded one: an uncertain post
#: is looked for minutes after it was sent, not days.
_POSTS_LOOKED_AT = 100
#: How long a post waits, without spending an attempt, while its Page waits for a reconnect.
_PAUSED_WAIT_S = 60.0


class PostingGraph(Protocol):
    def create_post(self, message: str, photo_ids: Sequence[str]) -> str: ...
    def list_posts(self) -> Iterable[dict[str, Any]]: ...


class FeedPoster:
    def __init__(self, store: Store, outbox: Outbox,
                 graph_for: Callable[[str], PostingGraph], policy: Policy) -> None:
        """`graph_for(album_id)`: the client of the album's Page, with its token."""
        self._store = store
        self._outbox = outbox
        self._graph_for = graph_for
        self._policy = policy

    def route(self) -> Route[messages.FeedPostRequested]:
        """The feed-post queue: the same retry tiers, dead letters and give-up as the photos."""
        return Route(QUEUE, messages.FeedPostRequested, self, RetryPolicy(
            self._policy.retry_delays, self._policy.max_attempts,
            self._policy.throttle_give_up_s), on_give_up=self.give_up)

    def __call__(self, message: messages.FeedPostRequested, attempt: int) -> None:
        stale = timedelta(seconds=self._policy.album_claim_stale_s)
        try:
            job = self._store.start_post(message.album_id, message.settle_seq, stale)
        except LookupError as exc:
            raise messages.PoisonMessage(str(exc)) from None
        if not job.taken:
            if job.busy_for:
                raise outcomes.Busy(job.busy_for, "another attempt may be posting")
            log.info("album %s: post of settle %s already %s; acking", message.album_id,
                     message.settle_seq, job.state or "superseded")
            return
        try:
            graph = self._graph_for(message.album_id)
        except PagePaused as exc:
            self._store.release_post_claim(message.album_id)
            raise outcomes.Busy(_PAUSED_WAIT_S, exc.reason) from None
        if attempt > 1 or job.taken_over:
            found = self._look_for_post(graph, message.album_id, job.photo_ids)
            if found is not None:
                log.info("album %s was already posted as %s", message.album_id, found)
                self._outbox.send_rows(self._store.record_posted(
                    message.album_id, message.settle_seq, found))
                return
        post_id = self._post(graph, message.album_id, job.title, job.photo_ids)
        self._outbox.send_rows(self._store.record_posted(message.album_id, message.settle_seq,
                                                         post_id))
        log.info("album %s posted as %s with %d photos", message.album_id, post_id,
                 len(job.photo_ids))

    def _post(self, graph: PostingGraph, album_id: str, title: str,
              photo_ids: Sequence[str]) -> str:
        try:
            return graph.create_post(title, photo_ids)
        except SQLAlchemyError:
            raise
        except Exception as exc:
            if not may_have_landed(exc):  # refused: the next attempt need not wait or look
                self._store.release_post_claim(album_id)
            raise outcomes.of(post_failure(exc)) from exc

    def _look_for_post(self, graph: PostingGraph, album_id: str,
                       photo_ids: Sequence[str]) -> str | None:
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

    def give_up(self, message: messages.FeedPostRequested, failure: Failure,
                letter: Outgoing) -> None:
        """The route's `on_give_up`: the failure, its dead letter and the album's settle (its
        email says the post failed, and why) in one transaction."""
        log.warning("album %s: the post failed for good: %s", message.album_id, failure.reason)
        self._outbox.send_rows(self._store.record_post_failed(
            message.album_id, message.settle_seq, failure.reason, letter))


def post_failure(exc: BaseException) -> Failure:
    """As a photo's failure, except a refused post's reason says what the user can do: the
    usual cause is that Facebook dropped the unpublished photos (it keeps them about a day)."""
    failure = classify(exc)
    if isinstance(exc, GraphError) and exc.code == 100:
        return Failure(FailureKind.PERMANENT,
                       f"Facebook refused the post ({graph_text(exc)}): its unpublished "
                       "photos have probably expired (Facebook keeps them about 24 hours); "
                       "publish the album again", 100)
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
