"""Which photo in a Facebook album an earlier, uncertain attempt of an image sent: the rule.

Captions and descriptions are public, so they carry no mark of ours. A photo is recognised by what
Graph returns for it and we know before sending: its caption (the user's), its pixel size (read
from the S3 object's first bytes; Facebook may scale a large photo down, so the aspect ratio is
compared, and the photo may not be larger than its source), and its `created_time`, at or after
the image's first attempt started (the database's clock; Graph's clock may differ from it, so a
margin is allowed). Photos already recorded for other images are never candidates.

Other images of the album that may have sent a photo looking the same (same caption, same size,
not recorded) are rivals: while any may still land, nothing is adopted (`Wait`); once none can,
the photos are paired with the images in a stable order, but only when there are exactly as many
unclaimed candidates as uncertain images. Otherwise the image fails (`Unsure`) rather than send a
duplicate. Plain functions: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

#: Graph's clock against the database's: a photo created up to this much "before" an attempt
#: started is still taken for that attempt's.
CLOCK_SKEW = timedelta(seconds=60)
#: Aspect ratios this close are the same picture scaled (Facebook rounds scaled sides).
_RATIO_TOLERANCE = 0.02
#: A source whose longest side is within this is taken to be kept at its own size, so its photo
#: must match it exactly; only larger ones may come back scaled down. Our assumption: the
#: largest rendition Facebook lists for a photo is 2048 px on its longest side.
LARGEST_KEPT_PX = 2048


@dataclass(frozen=True)
class Photo:
    """A photo as Graph lists it: `created` is naive UTC (None if Graph left it out)."""

    id: str
    caption: str
    created: datetime | None
    size: tuple[int, int] | None


@dataclass(frozen=True)
class Sent:
    """An image that may have a photo on Facebook: what it was sent with, and when."""

    image_id: int
    caption: str
    size: tuple[int, int] | None
    #: When its first attempt started (the database's clock); None: never attempted.
    since: datetime | None


@dataclass(frozen=True)
class Found:
    photo_id: str


@dataclass(frozen=True)
class NotSent:
    pass


@dataclass(frozen=True)
class Wait:
    """Ambiguous while a rival may still land: look again after `seconds`."""

    seconds: float
    reason: str


@dataclass(frozen=True)
class Unsure:
    """Ambiguous for good: the image fails with `reason` rather than risk a duplicate."""

    reason: str


Match = Found | NotSent | Wait | Unsure


def parse_photo(raw: Mapping[str, Any]) -> Photo:
    """A photo from a Graph listing: `width`/`height`, else the largest `images[]` entry."""
    return Photo(
        str(raw["id"]),
        str(raw.get("name") or ""),
        parse_graph_time(raw.get("created_time")),
        _size_of(raw),
    )


def parse_graph_time(value: Any) -> datetime | None:
    """Graph writes 2026-11-27T21:10:00+0000; naive UTC like the store's times."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.strptime(value, "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        return None
    return parsed.replace(tzinfo=None) - (parsed.utcoffset() or timedelta(0))


def looks_like(photo: Photo, image: Sent) -> bool:
    """Could `photo` be `image` as sent: the same caption, the same picture maybe scaled down,
    created no earlier than its first attempt (less the clock margin)."""
    if photo.caption != image.caption or not same_picture_size(photo.size, image.size):
        return False
    if image.since is None:
        return False
    return photo.created is None or photo.created >= image.since - CLOCK_SKEW


def same_picture_size(photo: tuple[int, int] | None, source: tuple[int, int] | None) -> bool:
    """Unknown on either side matches (nothing to tell them apart by)."""
    if photo is None or source is None or 0 in photo or 0 in source:
        return True
    if max(source) <= LARGEST_KEPT_PX:
        return photo == source
    if max(photo) > max(source) + 1:
        return False  # Facebook scales down, never up
    return abs(photo[0] / photo[1] - source[0] / source[1]) <= _RATIO_TOLERANCE * (
        source[0] / source[1]
    )


def match(
    image: Sent,
    photos: Iterable[Photo],
    claimed: Iterable[str],
    rivals: Sequence[Sent],
    rivals_in_flight_s: float,
) -> Match:
    """The photo `image` sent earlier, if it can be told.

    `claimed`: photo ids recorded for the album's images. `rivals`: the album's other
    unrecorded images that were attempted, whatever their caption; `rivals_in_flight_s`: how
    long until none of their attempts can still land (0: none can)."""
    taken = set(claimed)
    free = [p for p in photos if p.id not in taken]
    mine = [p for p in free if looks_like(p, image)]
    if not mine:
        return NotSent()
    alike = [
        r for r in rivals if r.image_id != image.image_id and any(looks_like(p, r) for p in mine)
    ]
    if len(mine) == 1 and not alike:
        return Found(mine[0].id)
    if rivals_in_flight_s > 0:
        return Wait(
            rivals_in_flight_s,
            "another image of the album with the same caption and size may still reach Facebook",
        )
    return _pair(image, alike, free)


def _pair(image: Sent, alike: Sequence[Sent], free: Sequence[Photo]) -> Match:
    """Nothing more can land: pair uncertain images and candidates in a stable order, only
    when they are as many (each image then adopts the same photo whoever decides first)."""
    group = sorted([image, *alike], key=_image_order)
    candidates = sorted(
        {p.id: p for p in free if any(looks_like(p, g) for g in group)}.values(), key=_photo_order
    )
    if len(candidates) != len(group):
        return Unsure(
            f"cannot tell which of {len(candidates)} photos on Facebook is this image: "
            f"{len(group)} images of the album have the same caption and size and "
            "their uploads' outcome is unknown; check the album on Facebook"
        )
    return Found(candidates[group.index(image)].id)


def _image_order(image: Sent) -> tuple[datetime, int]:
    return (image.since or datetime.min, image.image_id)


def _photo_order(photo: Photo) -> tuple[datetime, str]:
    return (photo.created or datetime.min, photo.id.rjust(32, "0"))


def _size_of(raw: Mapping[str, Any]) -> tuple[int, int] | None:
    width, height = raw.get("width"), raw.get("height")
    if isinstance(width, int) and isinstance(height, int):
        return width, height
    sizes = [
        (i.get("width"), i.get("height")) for i in raw.get("images") or [] if isinstance(i, Mapping)
    ]
    sized = [(w, h) for w, h in sizes if isinstance(w, int) and isinstance(h, int)]
    return max(sized, key=lambda s: s[0] * s[1]) if sized else None
