"""The store's POP3 server (RFC 1939, 2449, 2595, 5034); see docs/pop3.md."""
