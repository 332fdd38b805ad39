"""What the operator configured: ``settings`` (one frozen dataclass, validated at start-up; its values'
parsers and ``setting()`` in ``parsers``), ``routes`` (which store a prefix goes to) and ``exports`` (the export
targets of a batch).

May import the top-level modules only; never reads the environment itself (entry points pass a mapping)."""
