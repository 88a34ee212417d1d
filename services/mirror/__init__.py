"""Mirror: keeps a peer store live and identical."""
