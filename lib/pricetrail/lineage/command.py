"""``pricetrail lineage``: ad-hoc SQL, a small shell and the canned reports, as a table, CSV, JSON or Parquet."""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any, TextIO

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pricetrail.lineage import connect, reports
from pricetrail.lineage.database import open_database, view_docs
from pricetrail.lineage.errors import LineageError
from pricetrail.lineage.query import run, statements
from pricetrail.lineage.tables import Tables
from pricetrail.project.files import atomic_path

FORMATS = ("table", "csv", "json", "parquet")
CELL_WIDTH = 64  # a table cell longer than this is cut (use --format csv or json for whole values)
REVISIONS_HELP = ("which revisions to load, read from git objects: a count of recent commits (20), a range "
                  "(v1..HEAD), one commit, 'workspace' (the default), or a comma-separated list")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``lineage`` subcommand's actions and options."""
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--format", choices=FORMATS, default="table", help="how to print the result")
    output.add_argument("--output", "-o", metavar="FILE", help="write the result to FILE (the only file written)")
    history = argparse.ArgumentParser(add_help=False)
    history.add_argument("--revisions", "-r", metavar="SPEC", help=REVISIONS_HELP)
    actions = parser.add_subparsers(dest="lineage_action", required=True, metavar="ACTION")
    query = actions.add_parser("query", parents=[history, output], help="run one SQL query over the views")
    query.add_argument("sql", nargs="?", help="the query (or --file)")
    query.add_argument("--file", "-f", metavar="FILE", help="read the query from FILE")
    shell = actions.add_parser("shell", parents=[history], help="an interactive SQL shell over the views")
    shell.add_argument("--format", choices=FORMATS[:3], default="table")
    actions.add_parser("views", parents=[output], help="the views, their columns and what they hold")
    actions.add_parser("fleet", parents=[history, output],
                       help="every product: gates, served and latest model, key metrics, last decision")
    served = actions.add_parser("served", parents=[history, output],
                                help="the lineage of a product's served model, from raw data to promotion")
    served.add_argument("stockcode")
    diff = actions.add_parser("diff", parents=[output],
                              help="what changed between two revisions: stages, inputs, outputs, params, metrics, "
                                   "decisions")
    diff.add_argument("before", help="a commit (HEAD~1, a tag, a sha)")
    diff.add_argument("after", nargs="?", default="workspace", help="a commit, or the workspace (the default)")


def run_command(args: argparse.Namespace, root: Path, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    action = args.lineage_action
    if action == "shell":
        return shell(connect(root, args.revisions), stdin, stdout, stderr, args.format)
    if action == "views":
        result = describe_views()
    elif action == "query":
        result = run(connect(root, args.revisions), _query_text(args))
    elif action == "fleet":
        result = reports.fleet(connect(root, args.revisions))
    elif action == "served":
        result = reports.served_lineage(connect(root, args.revisions), args.stockcode)
    elif action == "diff":
        if args.before == args.after:
            raise LineageError(f"diff {args.before} {args.after}: name two different revisions")
        result = reports.diff(connect(root, [args.before, args.after]))
    else:  # argparse allows only the actions above
        raise LineageError(f"unknown lineage action {action!r}")
    emit(result, args.format, Path(args.output) if args.output else None, stdout)
    return 0


def _query_text(args: argparse.Namespace) -> str:
    if args.file and args.sql:
        raise LineageError("give the query either as an argument or with --file, not both")
    if args.file:
        path = Path(args.file)
        if not path.is_file():
            raise LineageError(f"SQL file {path} does not exist")
        return path.read_text(encoding="utf-8")
    if not args.sql:
        raise LineageError("give a query, e.g. pricetrail lineage query \"SELECT * FROM stages\", or --file FILE")
    return str(args.sql)


def describe_views() -> pa.Table:
    """Each view with its columns and its one-line documentation (from an empty database: no records needed)."""
    con = open_database(Tables().to_arrow(), set(), Path())
    rows = run(con, "SELECT table_name AS view, string_agg(column_name, ', ' ORDER BY ordinal_position) AS columns "
                    "FROM information_schema.columns WHERE table_schema = 'main' GROUP BY table_name").to_pylist()
    columns = {row["view"]: row["columns"] for row in rows}
    docs = view_docs()
    return pa.table({"view": list(docs), "columns": [columns.get(name, "(a table macro)") for name in docs],
                     "what": list(docs.values())})


# --------------------------------------------------------------------------------------------- output


def emit(result: pa.Table, fmt: str, output: Path | None, stdout: TextIO) -> None:
    """Print ``result`` or write it to ``output`` (atomically: a failed write leaves nothing half-written)."""
    if fmt == "parquet":
        if output is None:
            raise LineageError("--format parquet needs --output FILE")
        with atomic_path(output) as tmp:
            pq.write_table(result, tmp)
    elif output is not None:
        with atomic_path(output) as tmp:
            tmp.write_text(render(result, fmt), encoding="utf-8")
    else:
        stdout.write(render(result, fmt))
        return
    stdout.write(f"wrote {result.num_rows} rows to {output}\n")


def render(result: pa.Table, fmt: str) -> str:
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(result.column_names)
        writer.writerows([_plain(value) for value in row.values()] for row in result.to_pylist())
        return buffer.getvalue()
    if fmt == "json":
        return json.dumps(result.to_pylist(), indent=2, default=_plain) + "\n"
    return _table(result)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | dict):
        return json.dumps(value, default=str)
    return "" if value is None else value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(value) if math.isnan(value) or math.isinf(value) else f"{value:.6g}"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | dict):
        value = json.dumps(value, default=str)
    text = " ".join(str(value).split())
    return text if len(text) <= CELL_WIDTH else text[:CELL_WIDTH - 1] + "…"


def _table(result: pa.Table) -> str:
    names = result.column_names
    rows = [[_cell(value) for value in row.values()] for row in result.to_pylist()]
    numeric = [pa.types.is_integer(field.type) or pa.types.is_floating(field.type) for field in result.schema]
    widths = [max([len(name), *(len(row[i]) for row in rows)]) for i, name in enumerate(names)]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.rjust(width) if right else cell.ljust(width)
                         for cell, width, right in zip(cells, widths, numeric, strict=True)).rstrip()

    body = [line(names), line(["-" * width for width in widths]), *(line(row) for row in rows)]
    return "\n".join(body) + f"\n({len(rows)} row{'' if len(rows) == 1 else 's'})\n"


# --------------------------------------------------------------------------------------------- the shell

SHELL_HELP = """SQL over the lineage views; end each statement with ';'. Only queries run (the views are read-only).
  .views          the views and what they hold      .schema VIEW   its columns and types
  .format FORMAT  table, csv or json                .quit          leave (or Ctrl-D)
"""


def shell(con: duckdb.DuckDBPyConnection, stdin: TextIO, stdout: TextIO, stderr: TextIO, fmt: str = "table") -> int:
    """A small REPL: statements end with ';'. An error is printed and the shell goes on; the exit status is 1 if
    any statement failed (so a piped script fails as a whole)."""
    interactive = stdin.isatty()
    read = _reader(stdin, stdout, interactive)
    if interactive:
        stdout.write(SHELL_HELP)
    failures = 0
    buffer: list[str] = []
    state = {"format": fmt}
    while True:
        line = read("lineage> " if not buffer else "     ...> ")
        if line is None:
            break
        if not buffer and line.strip().startswith("."):
            if _dot_command(con, line.strip(), state, stdout, stderr):
                break
            continue
        buffer.append(line)
        if line.rstrip().endswith(";"):
            failures += _execute(con, "\n".join(buffer), state["format"], stdout, stderr)
            buffer = []
    if "".join(buffer).strip():
        failures += _execute(con, "\n".join(buffer), state["format"], stdout, stderr)
    return 1 if failures else 0


def _reader(stdin: TextIO, stdout: TextIO, interactive: bool) -> Callable[[str], str | None]:
    if interactive:
        import readline  # noqa: F401 - line editing and history for input()

        def read_tty(prompt: str) -> str | None:
            try:
                return input(prompt)
            except EOFError:
                stdout.write("\n")
                return None

        return read_tty

    def read_pipe(prompt: str) -> str | None:
        line = stdin.readline()
        return None if line == "" else line.rstrip("\n")

    return read_pipe


def _dot_command(con: duckdb.DuckDBPyConnection, command: str, state: dict[str, str], stdout: TextIO,
                 stderr: TextIO) -> bool:
    """Run a shell command; True means leave."""
    name, _, rest = command.partition(" ")
    rest = rest.strip().rstrip(";")
    if name in (".quit", ".exit"):
        return True
    if name == ".help":
        stdout.write(SHELL_HELP)
    elif name == ".views":
        stdout.write(render(pa.table({"view": list(view_docs()), "what": list(view_docs().values())}), "table"))
    elif name == ".schema" and rest:
        if rest not in view_docs():
            stderr.write(f"error: no view named {rest}; .views lists them\n")
        else:
            _execute(con, f"DESCRIBE {rest}", "table", stdout, stderr)
    elif name == ".format" and rest in FORMATS[:3]:
        state["format"] = rest
    else:
        stderr.write(f"error: unknown shell command {command!r}\n{SHELL_HELP}")
    return False


def _execute(con: duckdb.DuckDBPyConnection, text: str, fmt: str, stdout: TextIO, stderr: TextIO) -> int:
    """Run each statement of ``text``; the number that failed."""
    try:
        texts = statements(con, text)
    except LineageError as error:
        stderr.write(f"error: {error}\n")
        return 1
    failed = 0
    for statement in texts:
        try:
            stdout.write(render(run(con, statement), fmt))
        except LineageError as error:
            stderr.write(f"error: {error}\n")
            failed += 1
    return failed
