"""The store's IMAP server (RFC 3501 with extensions): parser, session, handlers."""
