"""The outbound relay: delivers ``MAIL_OUTBOUND`` to other domains by SMTP (see docs/relay.md)."""
