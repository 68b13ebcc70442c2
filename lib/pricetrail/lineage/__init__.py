"""Lineage in SQL: DuckDB views over the pipeline's own records, in the workspace or across git revisions.

``connect(root)`` reads dvc.lock, params.yaml, stockcodes.yaml, the metrics files and the registry (through
:mod:`pricetrail.registry`) into an in-memory DuckDB database and returns a read-only connection with the
documented views (``view_docs()``); ``connect(root, "20")`` loads the last 20 commits from git objects, each row
carrying its revision and commit time. ``run(con, sql)`` runs one query (anything that writes is refused), and
:mod:`pricetrail.lineage.reports` answers the common questions. No server, nothing written.

    con = connect(Path("."), "10")
    run(con, "SELECT commit_time, number FROM metrics WHERE product = '85123A' AND metric = 'rmsle'")
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from pathlib import Path

import duckdb

from pricetrail.lineage.database import open_database, view_docs
from pricetrail.lineage.errors import LineageError
from pricetrail.lineage.query import run, statements
from pricetrail.lineage.snapshot import LOCK, WORKSPACE, Revision, read_snapshots, resolve_revisions
from pricetrail.lineage.tables import collect
from pricetrail.registry.artifacts import dvc_cache_dir

__all__ = ["LineageError", "Revision", "WORKSPACE", "connect", "resolve_revisions", "run", "statements",
           "view_docs"]


def connect(root: Path, revisions: str | Sequence[str] | None = None) -> duckdb.DuckDBPyConnection:
    """A read-only DuckDB connection with the lineage views over ``revisions`` (default: the workspace).

    ``revisions``: ``"workspace"``, a count of recent commits (``"20"``), a git range (``"v1..HEAD"``), one
    commit, or a comma-separated list of these.
    """
    root = Path(root)
    wanted = resolve_revisions(root, revisions)
    snapshots, blobs = read_snapshots(root, wanted)
    if not any(LOCK in snapshot.files for snapshot in snapshots):
        if wanted == [Revision(WORKSPACE)]:
            raise LineageError(f"{root / LOCK} does not exist: nothing has run yet (`pricetrail run` writes it); "
                               "the views are built from dvc.lock, metrics/ and registry/")
        labels = ", ".join(revision.label for revision in wanted)
        subject = "they were" if len(wanted) > 1 else "it was"
        raise LineageError(f"no dvc.lock in {labels}: nothing had run when {subject} committed (git log --oneline "
                           "-- dvc.lock lists the commits that have one)")
    # Millions of small tuples and dicts, none of them in a reference cycle: the cyclic collector would walk them
    # again and again as they pile up.
    collecting = gc.isenabled()
    gc.disable()
    try:
        tables = collect(root, snapshots, blobs)
        del snapshots, blobs
        arrow, dir_hashes = tables.to_arrow(), tables.dir_hashes  # the zip into columns makes millions of tuples too
        del tables  # the rows as Python objects: several times the size of the Arrow tables
        # Reading the .dir objects makes a dict per file listed (tens of thousands over a history) as well.
        return open_database(arrow, dir_hashes, dvc_cache_dir(root))
    finally:
        if collecting:
            gc.enable()
