"""Webmail node: HTTP in front, IMAP to the store behind."""
