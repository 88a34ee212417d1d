"""The filter's SMTP layer: pure parser and framing, session state machine, handlers."""
