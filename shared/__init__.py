"""What the services share: the contracts (messages, topology, settings), the broker adapter
(`broker/`), the store (`store/`), and the runtime around a message's handling."""
