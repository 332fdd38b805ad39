"""In-memory fakes of the adapters (for unit tests; integration tests use the real local services)."""
