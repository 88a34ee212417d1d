"""Content screening: ClamAV (our own INSTREAM client) and SpamAssassin (aiospamc)."""
