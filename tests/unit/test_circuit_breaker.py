from services.uploader.circuit_breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(window_s=60, min_calls=10, failure_ratio=0.5, cooldown_s=30, clock=clock)


def test_it_stays_closed_while_most_calls_succeed() -> None:
    clock = Clock()
    b = breaker(clock)
    for n in range(40):
        b.record(ok=n % 3 != 0)
    assert b.open_for() == 0


def test_it_opens_when_most_calls_of_the_last_minute_failed_and_closes_by_itself() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(10):
        b.record(ok=False)
    assert b.open_for() == 30
    assert b.wait_while_open(clock.sleep) == 30
    assert b.open_for() == 0


def test_too_few_calls_never_open_it() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(9):
        b.record(ok=False)
    assert b.open_for() == 0


def test_failures_older_than_the_window_are_forgotten() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(9):
        b.record(ok=False)
    clock.now += 61
    for _ in range(5):
        b.record(ok=True)
    b.record(ok=False)
    assert b.open_for() == 0


def test_after_the_pause_it_judges_fresh_calls_only() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(10):
        b.record(ok=False)
    clock.now += 31
    b.record(ok=True)
    assert b.open_for() == 0
