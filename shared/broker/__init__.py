"""The broker adapter: the only package that imports pika.

- `connection`: connection parameters, message properties, topology declaration, queue depth;
- `publisher`: publishes batches with confirms (the API, the outbox);
- `consumer`: the consumer runtime both services run their handlers in;
- `dead_letter_queue`: reads and takes dead letters for the operator's tools;
- `declarer`: declares the topology for a service, taking in an older version's queues;
- `management`: the management HTTP API (policies, a queue's arguments), where AMQP cannot;
- `policies`: applies the broker policies (what an operator may tune) at start or by CLI;
- `errors`: what a publish or connection failure raises (no pika needed to catch it).

This module imports nothing, so `shared.broker.errors` can be caught without loading pika.
"""
