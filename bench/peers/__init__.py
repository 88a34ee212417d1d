"""Private peer instances (Postfix, Dovecot, spamd/clamd) run by the harness."""
