"""cloop.bench: compare cloop with stock asyncio and uvloop.

Run it with ``python -m cloop.bench --help``. The modules:

- ``__main__``: the command line and the overall flow.
- ``_registry``: how a workload is declared (``@workload``), timed and checked.
- ``workloads``: the core workloads (callbacks, timers, futures, tasks).
- ``_loops``: the loops under test, created by name.
- ``_worker``: runs one workload on one loop in a fresh process.
- ``_runner``: starts the workers, interleaving loops, and collects samples.
- ``_stats``: medians, spreads and speed ratios.
- ``_report``: the final table and the ``--json`` document.
"""
