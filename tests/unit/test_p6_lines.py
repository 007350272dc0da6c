"""P6's consumer child reports each probe it handles as one line on a pipe, from four worker
threads at once; the bench parses those lines. A line garbled by another thread's makes a
handled probe look lost (what once made P6 count 2 probes "lost by the broker")."""

from __future__ import annotations

import io
import os
import threading
import uuid

from bench import p6_restart


def test_lines_from_four_threads_at_once_all_parse() -> None:
    read_end, write_end = os.pipe()
    ids = [[uuid.uuid4().hex for _ in range(300)] for _ in range(4)]
    start = threading.Barrier(4)
    # As the child's stdout under PYTHONUNBUFFERED=1 (bench.common.base_env): each write is a
    # write(2) of its own.
    with io.TextIOWrapper(io.FileIO(write_end, "w"), write_through=True) as stream:

        def worker(mine: list[str]) -> None:
            for probe_id in mine:
                start.wait()  # the four report together, as after a reconnect
                p6_restart.report_handled(stream, probe_id)

        def read() -> None:
            with os.fdopen(read_end) as pipe:
                lines.extend(pipe.read().splitlines())

        reader = threading.Thread(target=read)
        lines: list[str] = []
        reader.start()
        threads = [threading.Thread(target=worker, args=(mine,)) for mine in ids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    reader.join()
    parsed = [line.split() for line in lines]
    assert all(len(p) == 3 and p[0] == "consumed" for p in parsed), [
        line for line in lines if len(line.split()) != 3
    ][:3]
    assert sorted(p[2] for p in parsed) == sorted(i for mine in ids for i in mine)
