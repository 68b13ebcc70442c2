"""The one error the lineage views raise: bad SQL, an unknown revision, a record that cannot be read."""

from __future__ import annotations


class LineageError(ValueError):
    """A lineage query or the records it reads cannot be answered; the message says what and how to fix it."""
