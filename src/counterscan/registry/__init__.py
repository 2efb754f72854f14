"""Who owns what: members and their keys, brands, reference assets and their uploads, and banks of signals
shared between members (the hash exchange)."""
