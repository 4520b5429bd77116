"""The pure core: a delivery in, decisions out. No I/O, no clock, no randomness, no broker."""
