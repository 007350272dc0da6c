"""The decisions, as plain functions: a message's fate (ack, a retry copy or a dead
letter), the retry schedule, what counts as an outage, an album's rules, when a
dead letter is stale."""
