"""Settings every service reads, the secrets a local run makes for itself, the
redaction of connection strings, the cipher of Page tokens at rest."""
