"""The one way governance opens its SQLite files: WAL, private (0600), schema applied."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Iterator


def open_private(path: Path, schema: str, *pragmas: str, busy_timeout: float = 5.0) -> sqlite3.Connection:
    """A connection in autocommit mode (use ``with transaction(db):`` for a transaction) to a 0600 database.

    ``busy_timeout``: how long a write waits for another process's lock before it fails."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Created 0600 before SQLite opens it: SQLite gives its -wal and -shm files the database
    # file's mode, so they are private from the first start too.
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for side in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if side.exists():
            side.chmod(0o600)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout)
    db.execute("PRAGMA journal_mode=WAL")
    for pragma in pragmas:
        db.execute(f"PRAGMA {pragma}")
    db.executescript(schema)
    return db


def open_readonly(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN … COMMIT (ROLLBACK on error) on an autocommit connection, where ``with db:`` begins nothing."""
    db.execute("BEGIN")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
