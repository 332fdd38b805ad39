"""How pending files become few imports: which folders are ready and which generation wins (``selection``),
the in-place import URIs (``planner`` on the URI grammar of ``wildcard``), staged copies (``staging``), the held
records and their lease (``held``) and the messages settled as poison (``poison``).

May import ``ledger``, ``messages``, ``config`` and the top-level modules; never a stage, ``cli`` or ``adapters``."""
