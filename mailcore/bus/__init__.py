"""The message bus (NATS JetStream): names, schemas, connection, declarations, claim check."""
