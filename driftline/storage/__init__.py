"""Storage: the object-store protocol with its S3 and in-memory stores, and every key driftline writes."""
