"""The router's lifetime: the service, its workers, its HTTP endpoint and in-memory state."""
