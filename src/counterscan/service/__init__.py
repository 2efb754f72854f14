"""The real-time check, webhooks (outbox and delivery), health and metrics."""
