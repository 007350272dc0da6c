from typing import Any

from shared.contracts import topology


def test_every_work_queue_has_its_tiers_their_jittered_twins_and_dead_letters() -> None:
    specs = {spec.name: spec for spec in topology.queue_specs((30, 5, 5))}
    assert set(specs) == {
        f"{queue}{suffix}"
        for queue in ("uploader.image-uploads", "notifier.album-settled", "uploader.feed-posts")
        for suffix in (
            "",
            ".retry.00005s",
            ".retry.00007s",
            ".retry.00030s",
            ".retry.00038s",
            ".dead",
        )
    }


def test_jitter_twins_never_wait_less_than_the_delay() -> None:
    assert topology.jittered(1) == (1, 2)
    assert topology.jittered(120) == (120, 150)
    assert topology.retry_tiers((5, 1)) == [1, 2, 5, 7]


def test_a_tier_dead_letters_back_to_its_work_queue_after_its_ttl() -> None:
    spec = {s.name: s for s in topology.queue_specs((5,))}["uploader.image-uploads.retry.00005s"]
    assert spec.arguments["x-message-ttl"] == 5000
    assert spec.arguments["x-dead-letter-exchange"] == topology.WORK_EXCHANGE
    assert spec.arguments["x-dead-letter-routing-key"] == topology.IMAGE_UPLOADS.routing_key
    assert (spec.exchange, spec.routing_key) == (topology.RETRY_EXCHANGE, spec.name)


def test_work_queues_dead_letter_at_least_once_past_the_delivery_limit() -> None:
    arguments = topology.work_queue_arguments()
    assert arguments["x-queue-type"] == "quorum"
    assert "x-delivery-limit" not in arguments  # a policy: it may change
    assert arguments["x-dead-letter-exchange"] == topology.DEAD_EXCHANGE
    assert arguments["x-dead-letter-strategy"] == "at-least-once"
    assert arguments["x-overflow"] == "reject-publish"


def test_dead_letters_never_expire_and_refuse_when_full() -> None:
    arguments = topology.dead_letter_queue_arguments()
    assert "x-message-ttl" not in arguments and "x-expires" not in arguments
    assert arguments["x-overflow"] == "reject-publish"
    assert "x-max-length" not in arguments  # a policy: it may change


class RecordingChannel:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def exchange_declare(self, exchange: str, exchange_type: str, durable: bool) -> None:
        self.calls.append(("exchange", exchange, exchange_type, durable))

    def queue_declare(self, queue: str, durable: bool, arguments: dict[str, Any]) -> None:
        self.calls.append(("queue", queue, durable))

    def queue_bind(self, queue: str, exchange: str, routing_key: str) -> None:
        self.calls.append(("bind", queue, exchange, routing_key))


def test_declare_makes_durable_exchanges_and_binds_every_queue() -> None:
    channel = RecordingChannel()
    topology.declare(channel, (5,))
    exchanges = [c for c in channel.calls if c[0] == "exchange"]
    assert all(c[3] for c in exchanges) and len(exchanges) == 3
    queues = {c[1] for c in channel.calls if c[0] == "queue"}
    bound = {c[1] for c in channel.calls if c[0] == "bind"}
    assert queues == bound and len(queues) == 12  # 3 work queues, 2 tiers and a dead each


def test_no_queue_argument_is_one_a_policy_carries() -> None:
    for spec in topology.queue_specs((5, 30)):
        assert not set(spec.arguments) & topology.POLICY_CARRIED_ARGUMENTS, spec.name


def test_the_work_queue_policy_matches_exactly_the_work_queues() -> None:
    import re

    work, dead = topology.policy_specs(delivery_limit=7, dead_letter_max_length=50)
    names = [spec.name for spec in topology.queue_specs((5,))] + ["uploader.image-uploads2"]
    assert [n for n in names if re.match(work.pattern, n)] == [
        "uploader.image-uploads",
        "notifier.album-settled",
        "uploader.feed-posts",
    ]
    assert [n for n in names if re.match(dead.pattern, n)] == [
        "uploader.image-uploads.dead",
        "notifier.album-settled.dead",
        "uploader.feed-posts.dead",
    ]
    assert work.definition == {"delivery-limit": 7} and dead.definition == {"max-length": 50}
    assert work.body()["apply-to"] == "queues" and work.body()["priority"] == 1


def test_an_old_queue_serves_when_it_differs_only_in_what_policies_carry() -> None:
    wanted = topology.work_queue_arguments()
    assert topology.differs_only_in_policy_keys(wanted, {**wanted, "x-delivery-limit": 20})
    assert not topology.differs_only_in_policy_keys(wanted, {**wanted, "x-queue-type": "classic"})
    assert not topology.differs_only_in_policy_keys(wanted, {"x-delivery-limit": 20})
    assert topology.leftover_arguments({**wanted, "x-delivery-limit": 20}) == {
        "x-delivery-limit": 20
    }


def test_tiers_no_longer_configured_are_found_and_only_ours() -> None:
    existing = [
        "uploader.image-uploads.retry.00005s",
        "uploader.image-uploads.retry.00007s",
        "uploader.image-uploads.retry.00030s",
        "notifier.album-settled.retry.00038s",
        "someone.elses.retry.00030s",
        "uploader.image-uploads",
        "uploader.image-uploads.dead",
    ]
    assert topology.stale_retry_queues(existing, (5,)) == [
        "notifier.album-settled.retry.00038s",
        "uploader.image-uploads.retry.00030s",
    ]
