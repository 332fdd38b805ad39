"""Adapters behind small Protocols: Cloud Storage, Pub/Sub, the Healthcare API. They translate third-party
errors into dicomflow's (RetryableError / PermanentError) at the boundary."""
