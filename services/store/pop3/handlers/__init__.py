"""POP3 command handlers, one module per command family."""
