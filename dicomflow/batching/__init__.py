"""How pending files become few imports: which folders are ready and which generation wins (``selection``),
the in-place import URIs (``planner``: whole subtrees in ``subtrees``, one folder's files in ``folder_covers``,
the plan they draw in ``plan_draft``, on the URI grammar of ``wildcard``), staged copies (``staging``), the held
records and their lease (``held``) and the messages settled as poison (``poison``).

May import ``ledger``, ``messages``, ``config`` and the top-level modules; never a stage, ``cli`` or ``adapters``."""
