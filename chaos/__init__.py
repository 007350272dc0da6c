"""The fault matrix (`make chaos`, `python -m chaos [--seed N] [--only NAME,...] [--quick]`).

Each row starts a fresh system on the run's own RabbitMQ node (node.py: its own name, ports
and data directory, so it can be SIGKILLed, SIGSTOPped and restarted), a vhost and a fresh
PostgreSQL database of its own, the stand-ins and the three services (system.py, with cuttable
TCP proxies in front of S3, SMTP and the store: proxy.py), publishes seeded random albums
through the API (workload.py), injects its fault (faults.py), and is judged by the ledger
(ledger.py): lost 0, duplicate photos 0, one email per settle, queues drained, dead letters
only what was meant to die. Logs of every process stay in var/chaos/<time>/<row>/.
"""
