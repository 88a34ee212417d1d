"""SMTP filter node: screening and durable hand-off to JetStream."""
