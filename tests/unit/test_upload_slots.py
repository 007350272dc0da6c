"""Upload slots go first come, first served: a waiter that looks up keeps its place."""

import threading

import pytest

from services.uploader.upload_slots import UploadSlots


def test_a_freed_slot_goes_to_the_first_in_line_not_to_a_later_one() -> None:
    slots = UploadSlots(1)
    assert slots.acquire(0.0) is None  # held
    first = slots.acquire(0.0)
    second = slots.acquire(0.0)
    assert first is not None and second is not None  # both in line
    slots.release()
    assert slots.acquire(0.0, second) is second  # not its turn yet
    assert slots.acquire(0.0, first) is None
    slots.release()
    assert slots.acquire(0.0, second) is None


def test_a_newcomer_does_not_take_a_slot_someone_waits_for() -> None:
    slots = UploadSlots(1)
    assert slots.acquire(0.0) is None
    waiting = slots.acquire(0.0)
    slots.release()
    newcomer = slots.acquire(0.0)
    assert newcomer is not None, "the newcomer took the slot the waiter was first in line for"
    assert slots.acquire(0.0, waiting) is None


def test_one_who_leaves_the_line_lets_the_next_go() -> None:
    slots = UploadSlots(1)
    assert slots.acquire(0.0) is None
    leaving, next_one = slots.acquire(0.0), slots.acquire(0.0)
    assert leaving is not None and next_one is not None
    slots.leave(leaving)
    slots.release()
    assert slots.acquire(0.0, next_one) is None


def test_a_waiter_is_woken_when_a_slot_frees() -> None:
    slots = UploadSlots(1)
    assert slots.acquire(0.0) is None
    got: list[object | None] = []
    waiter = threading.Thread(target=lambda: got.append(slots.acquire(10.0)), daemon=True)
    waiter.start()
    slots.release()
    waiter.join(5)
    assert got == [None]


def test_there_is_at_least_one_slot() -> None:
    with pytest.raises(ValueError):
        UploadSlots(0)
