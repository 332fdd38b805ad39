"""The JSON the pipeline reads and writes between its steps: CloudEvents in (``events``), the versioned
records passed between stages (``records``), and a long-running operation's JSON (``lro``).

May import the top-level modules only."""
