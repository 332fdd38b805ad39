"""Checking a finished import against the store: every file of it found by its UIDs with its own content
(``import_check``), what becomes of a content conflict (``conflicts``, CONFLICT_POLICY), and the API's own reason
for each failed file, read from Cloud Logging (``logged_reasons``).

May import ``ledger``, ``dicom``, ``messages``, ``config`` and the top-level modules; never a stage,
``batching``, ``cli`` or ``adapters``."""
