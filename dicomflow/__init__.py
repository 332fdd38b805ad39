"""dicomflow's core: the three stages over the rooms that serve them.

    stages/     intake, flush, follow: one per trigger, the sequence only
    batching/   ready folders, in-place import URIs, staged copies, held records, poison messages
    reconcile/  a finished import checked against the store; conflicts; the API's per-file reasons
    ledger/     a batch's durable state, failure notes, results
    dicom/      header sniffing, content comparison
    messages/   events in, records between the stages, operations' JSON
    config/     settings, routes, export targets
    ports, errors, logs, retry, parsing, pool: the top-level modules every room may import

Imports point down: a stage may import every room; batching and reconcile import ledger, messages and config
(reconcile also dicom); ledger imports messages and config; dicom, messages and config only the top level.
``tests/unit/test_rooms.py`` checks it. ``adapters/`` implement the ports on Google's clients; ``cli/`` is an
entry point like ``main.py``; no core room imports either.
"""
