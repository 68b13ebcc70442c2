"""The in-memory DuckDB database behind the views: load the tables, expand folder hashes, then lock it down.

Everything is read before the first user statement: afterwards the connection has no access to files
(``enable_external_access=false``, locked), so a query can neither read nor write outside the database, and
:func:`pricetrail.lineage.query.run` refuses any statement that is not a query.
"""

from __future__ import annotations

import json
import logging
import os
import re
from functools import cache
from importlib import resources
from pathlib import Path

import duckdb
import pyarrow as pa

from pricetrail.lineage.errors import LineageError

log = logging.getLogger(__name__)

_DIR_HASH = re.compile(r"^[0-9a-f]{32}\.dir$")
_VIEW_DOC = re.compile(r"^-- (\w+)(?:\([^)]*\))?: (.+)\nCREATE (?:VIEW|MACRO) (\w+)", re.MULTILINE)


@cache
def sql_text(name: str) -> str:
    """A SQL file of the package (``sql/<name>``)."""
    return (resources.files("pricetrail.lineage") / "sql" / name).read_text(encoding="utf-8")


def view_docs() -> dict[str, str]:
    """Each view (and table macro) with its one-line documentation, in the order views.sql defines them."""
    docs = {}
    for match in _VIEW_DOC.finditer(sql_text("views.sql")):
        if match.group(1) != match.group(3):
            raise LineageError(f"views.sql documents {match.group(1)} above CREATE {match.group(3)}")
        docs[match.group(1)] = match.group(2)
    return docs


def open_database(tables: dict[str, pa.Table], dir_hashes: set[str], cache_dir: Path) -> duckdb.DuckDBPyConnection:
    # No progress bar: it writes to stdout, between a query's rows, whenever a statement runs over 2 s.
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute("CREATE SCHEMA internal")
        for name, table in tables.items():
            con.register("_load", table)
            con.execute(f"CREATE TABLE internal.{name} AS SELECT * FROM _load")  # our table names, not input
            con.unregister("_load")
        _refuse_invalid_json(con)
        _load_dir_objects(con, dir_hashes, cache_dir)
        con.execute(sql_text("build.sql"))
        con.execute(sql_text("views.sql"))
    except duckdb.Error as error:
        con.close()
        raise LineageError(f"cannot build the lineage views: {error}") from error
    except LineageError:
        con.close()
        raise
    # From here on the connection touches no file: no reads, no writes, no spilling, no extension downloads.
    con.execute("SET temp_directory = ''")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def _refuse_invalid_json(con: duckdb.DuckDBPyConnection) -> None:
    invalid = con.execute("SELECT f.revision, f.path FROM internal.json_blobs b JOIN internal.files f USING (blob) "
                          "WHERE NOT json_valid(b.text) ORDER BY f.revision, f.path LIMIT 1").fetchall()
    if invalid:
        revision, path = invalid[0]
        where = path if revision == "workspace" else f"{revision[:10]}:{path}"
        raise LineageError(f"{where} is not valid JSON (truncated or damaged?); rerun the stage that writes it, or "
                           "restore it with git")


def _load_dir_objects(con: duckdb.DuckDBPyConnection, dir_hashes: set[str], cache_dir: Path) -> None:
    """internal.dir_files: each .dir object in the DVC cache (a JSON list of md5 and relpath) as rows.

    Read here rather than with DuckDB's read_json: thousands of tiny files cost ~0.3 ms each there, a tenth here.
    """
    folders: list[str] = []
    relpaths: list[str] = []
    md5s: list[str] = []
    missing = 0
    base = os.path.join(cache_dir, "files", "md5")
    for md5 in sorted(dir_hashes):
        if not _DIR_HASH.match(md5):
            continue
        path = os.path.join(base, md5[:2], md5[2:])
        try:
            with open(path, "rb") as handle:
                listing = json.loads(handle.read())
        except FileNotFoundError:
            missing += 1
            continue
        except (OSError, ValueError) as error:
            raise LineageError(f"{path} in the DVC cache is not a DVC folder listing: {error}") from error
        if not isinstance(listing, list):
            raise LineageError(f"{path} in the DVC cache is not a DVC folder listing (expected a JSON list)")
        for entry in listing:
            if isinstance(entry, dict) and "relpath" in entry:
                folders.append(md5)
                relpaths.append(str(entry["relpath"]))
                md5s.append(str(entry.get("md5")))
    if missing:
        log.warning("%d of %d folder hashes have no .dir object in the DVC cache %s; dir_files lacks their files "
                    "(`dvc fetch` brings them)", missing, len(dir_hashes), cache_dir)
    columns = {"dir_md5": folders, "relpath": relpaths, "md5": md5s}
    con.register("_load", pa.table({name: pa.array(values, pa.string()) for name, values in columns.items()}))
    con.execute("CREATE TABLE internal.dir_files AS SELECT * FROM _load")
    con.unregister("_load")
