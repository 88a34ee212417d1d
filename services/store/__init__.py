"""The store: delivery from JetStream, IMAP and POP3 on the mail storage engine."""
