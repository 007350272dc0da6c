"""Between the store and the broker: the outbox relay (what a transaction recorded
is published) and the replay of dead letters."""
