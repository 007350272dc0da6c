from shared import topology


def test_every_work_queue_has_its_tiers_their_jittered_twins_and_dead_letters():
    specs = {spec.name: spec for spec in topology.queue_specs((30, 5, 5), delivery_limit=20)}
    assert set(specs) == {
        f"{queue}{suffix}"
        for queue in ("uploader.image-uploads", "notifier.album-settled")
        for suffix in ("", ".retry.5s", ".retry.7s", ".retry.30s", ".retry.38s", ".dead")
    }


def test_jitter_twins_never_wait_less_than_the_delay():
    assert topology.jittered(1) == (1, 2)
    assert topology.jittered(120) == (120, 150)
    assert topology.retry_tiers((5, 1)) == [1, 2, 5, 7]


def test_a_tier_dead_letters_back_to_its_work_queue_after_its_ttl():
    spec = {s.name: s for s in topology.queue_specs((5,), 20)}["uploader.image-uploads.retry.5s"]
    assert spec.arguments["x-message-ttl"] == 5000
    assert spec.arguments["x-dead-letter-exchange"] == topology.WORK_EXCHANGE
    assert spec.arguments["x-dead-letter-routing-key"] == topology.IMAGE_UPLOADS.routing_key
    assert (spec.exchange, spec.routing_key) == (topology.RETRY_EXCHANGE, spec.name)


def test_work_queues_dead_letter_at_least_once_past_the_delivery_limit():
    arguments = topology.work_queue_arguments(delivery_limit=20)
    assert arguments["x-queue-type"] == "quorum"
    assert arguments["x-delivery-limit"] == 20
    assert arguments["x-dead-letter-exchange"] == topology.DEAD_EXCHANGE
    assert arguments["x-dead-letter-strategy"] == "at-least-once"
    assert arguments["x-overflow"] == "reject-publish"


def test_dead_letters_never_expire_and_refuse_when_full():
    arguments = topology.dead_letter_queue_arguments()
    assert "x-message-ttl" not in arguments and "x-expires" not in arguments
    assert arguments["x-overflow"] == "reject-publish"


class RecordingChannel:
    def __init__(self):
        self.calls = []

    def exchange_declare(self, exchange, exchange_type, durable):
        self.calls.append(("exchange", exchange, exchange_type, durable))

    def queue_declare(self, queue, durable, arguments):
        self.calls.append(("queue", queue, durable))

    def queue_bind(self, queue, exchange, routing_key):
        self.calls.append(("bind", queue, exchange, routing_key))


def test_declare_makes_durable_exchanges_and_binds_every_queue():
    channel = RecordingChannel()
    topology.declare(channel, (5,), 20)
    exchanges = [c for c in channel.calls if c[0] == "exchange"]
    assert all(c[3] for c in exchanges) and len(exchanges) == 3
    queues = {c[1] for c in channel.calls if c[0] == "queue"}
    bound = {c[1] for c in channel.calls if c[0] == "bind"}
    assert queues == bound and len(queues) == 8
