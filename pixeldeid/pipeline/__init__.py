"""``pixeldeid run``: one resumable pipeline for a mixed collection.

A run scans every input once (headers only), plans the work (kind, stages, patient
pseudonyms) into a SQLite ledger inside the output folder (``OUT/.pixeldeid/run.sqlite``),
then hands the items to stateless workers (a local process pool or a Dask cluster) and
records what came back. Modules: :mod:`.job` (job file), :mod:`.scan` and :mod:`.plan`,
:mod:`.ledger`, :mod:`.executors`, :mod:`.stages` (worker functions), :mod:`.packaging`,
:mod:`.runner` (the whole run) and :mod:`.cli`.
"""
