"""Knowledge of DICOM bytes, with no I/O of its own: reading just enough of a header to know an instance
(``sniff``) and whether two Part-10 files hold the same content (``content``).

May import the top-level modules only."""
