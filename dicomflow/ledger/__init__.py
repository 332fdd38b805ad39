"""A batch's durable state in the state bucket, the only room that knows its layout: the batch ledger's verbs
(``store``: ``BatchLedger``, built from one base per job over their shared ``state``: ``batches``, ``imports``,
``effects``, ``inflight``, ``refusals``) over a batch's typed, versioned records (``manifest``), the failure
notes and the one way a file is reported failed (``failures``), and the batch result computed from a manifest
(``results``).

May import ``messages``, ``config`` and the top-level modules; never a stage, ``batching``, ``reconcile``,
``cli`` or ``adapters``."""
