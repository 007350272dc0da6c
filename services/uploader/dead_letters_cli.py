"""python -m services.uploader dead-letters list|show|replay|purge: the operator's tools.

`list` marks the stale letters (`shared/policies/stale_letters.py`: the album page retried their
images) and `purge --stale` removes them; replaying one sends nothing."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from shared.broker.publisher import Publisher
from shared.config.settings import CommonSettings
from shared.contracts.dead_letters import DeadLetter
from shared.delivery.outbox import Outbox
from shared.delivery.replay import QUEUES, Replayer
from shared.store import Store


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("dead-letters", help="list, show, replay or purge dead letters")
    parser.add_argument(
        "--queue",
        choices=sorted(QUEUES),
        default="uploader",
        help="whose dead letters (default: uploader)",
    )
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="one line per dead letter, oldest first")
    listing.add_argument("--json", action="store_true")
    show = actions.add_parser("show", help="one dead letter: headers and body")
    show.add_argument("position", type=int)
    for name in ("replay", "purge"):
        action = actions.add_parser(name, help=f"{name} one, an album's, or all dead letters")
        which = action.add_mutually_exclusive_group(required=True)
        which.add_argument("--position", type=int)
        which.add_argument(
            "--id",
            help="the letter's message id (as list --json and the "
            "desk show it): stays right while the queue moves",
        )
        which.add_argument("--album")
        which.add_argument("--all", action="store_true")
        if name == "purge":
            which.add_argument(
                "--stale", action="store_true", help="the letters whose images are no longer failed"
            )


def run(args: argparse.Namespace, settings: CommonSettings) -> int:
    store = Store(settings.database_url)
    store.create_schema()
    publisher = Publisher(settings.amqp_url)
    try:
        replayer = Replayer(store, Outbox(store, publisher), settings.amqp_url)
        return _ACTIONS[args.action](replayer, args)
    finally:
        publisher.close()


def _list(replayer: Replayer, args: argparse.Namespace) -> int:
    letters = replayer.queue(args.queue).browse()
    stale = replayer.stale(letters, args.queue)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        **letter.summary(),
                        "stale": letter.position in stale,
                        "stale_reason": stale.get(letter.position),
                    }
                    for letter in letters
                ],
                indent=2,
            )
        )
        return 0
    for letter in letters:
        s = letter.summary()
        mark = f"  [stale: {stale[letter.position]}]" if letter.position in stale else ""
        print(
            f"{s['position']:>5}  {s['at'] or '-':25}  album={s['album_id'] or '-'}  "
            f"image={s['image_id'] or '-'}  attempts={s['attempts'] or '-'}  {s['reason']}"
            f"{mark}"
        )
    summary = f"{len(letters)} dead letters in {replayer.queue(args.queue).name}"
    if stale:
        summary += (
            f", {len(stale)} of them stale (replaying them sends nothing): remove them "
            f"with `dead-letters{_queue_option(args)} purge --stale`"
        )
    print(summary)
    return 0


def _show(replayer: Replayer, args: argparse.Namespace) -> int:
    for letter in replayer.queue(args.queue).browse():
        if letter.position == args.position:
            print(
                json.dumps(
                    {
                        **letter.summary(),
                        "headers": _printable(letter.headers),
                        "body": letter.body.decode(errors="replace"),
                    },
                    indent=2,
                )
            )
            return 0
    print(f"no dead letter at position {args.position}", file=sys.stderr)
    return 1


def _replay(replayer: Replayer, args: argparse.Namespace) -> int:
    replayed = replayer.replay(_chosen(args), args.queue)
    stale = f" ({replayed.stale} stale: removed, nothing sent)" if replayed.stale else ""
    print(f"replayed {replayed.taken} dead letters{stale}")
    return 0


def _purge(replayer: Replayer, args: argparse.Namespace) -> int:
    if args.stale:
        count = replayer.purge_stale(args.queue)
    else:
        count = replayer.purge(_chosen(args), args.queue)
    print(f"purged {count} dead letters")
    return 0


def _queue_option(args: argparse.Namespace) -> str:
    return "" if args.queue == "uploader" else f" --queue {args.queue}"


def _chosen(args: argparse.Namespace) -> Callable[[DeadLetter], bool]:
    if args.all:
        return lambda letter: True
    if args.album:
        return lambda letter: letter.album_id == args.album
    if args.id:
        return lambda letter: letter.message_id == args.id
    return lambda letter: letter.position == args.position


def _printable(headers: object) -> object:
    return json.loads(json.dumps(headers, default=str))


_ACTIONS = {"list": _list, "show": _show, "replay": _replay, "purge": _purge}
