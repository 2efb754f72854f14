"""What analysts do with suspects: the queue and verdicts, exports (CSV, JSON, HTML), the review web UI."""
