"""A batch scan: select what changed, match partitions on workers (local or Dask), score, store.

The scoring of one listing (``partition.assess_listing``) is the path the real-time check shares.
"""
