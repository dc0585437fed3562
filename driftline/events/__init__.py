"""Events: their names and records, the S3 outbox behind the ``EventSink`` interface, and Prefect's event API."""
