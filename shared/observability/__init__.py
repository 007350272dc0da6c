"""What shows how a process is doing: metrics (/metrics), the log format and
the ids a log line is about, error ids, readiness and the health server."""
