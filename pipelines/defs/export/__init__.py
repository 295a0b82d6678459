"""The export of one request: collection, normalization, archive, delivery."""
