"""One module per SMTP command family; each handler is ``async (session, arg) -> None``."""
