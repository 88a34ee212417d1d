"""mailctl internals: the local cluster supervisor and the account commands."""
