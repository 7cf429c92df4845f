"""The one way governance opens its SQLite files: WAL, private (0600), schema applied."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def open_private(path: Path, schema: str, *pragmas: str) -> sqlite3.Connection:
    """A connection in autocommit mode (use ``with db:`` for a transaction) to a 0600 database."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    for pragma in pragmas:
        db.execute(f"PRAGMA {pragma}")
    db.executescript(schema)
    path.chmod(0o600)
    return db


def open_readonly(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)
