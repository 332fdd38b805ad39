"""The pipeline's three stages, one per trigger: ``intake`` (an object finalized -> a pending record),
``flush`` (pending records -> batches and their imports), ``follow`` (an operation's watch -> the batch one step on).

Each stage is the sequence only; the mechanisms it runs live in the rooms below it. May import every core room
(batching, reconcile, ledger, dicom, messages, config) and the top-level modules; never ``cli`` or ``adapters``."""
