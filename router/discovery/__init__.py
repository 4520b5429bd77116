"""Who consumes what: the discovery protocol, the live registry, the census."""
