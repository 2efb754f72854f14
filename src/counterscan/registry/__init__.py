"""Who owns what: members, brands, assets, uploads, and banks of signals shared between members."""
