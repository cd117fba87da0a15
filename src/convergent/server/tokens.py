"""Access tokens: who may do what on which run.

Tokens live in the hub's data folder (``tokens.sqlite``), stored as SHA-256 hashes: a copied
data folder does not leak usable tokens. A token grants one role on one run, or on every
run (``run="*"``, how the admin token is made).
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from convergent.errors import StorageError
from convergent.sync.protocol import Role

ALL_RUNS = "*"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    """A token's grant (the token itself is only shown once, when created)."""

    prefix: str
    run: str
    role: Role
    created: float
    note: str


class TokenStore:
    """Tokens in an SQLite file (safe to share between the hub and the CLI)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS tokens (hash TEXT PRIMARY KEY, prefix TEXT NOT NULL,"
                " run TEXT NOT NULL, role INTEGER NOT NULL, created REAL NOT NULL,"
                " note TEXT NOT NULL)"
            )
        except (OSError, sqlite3.DatabaseError) as err:
            raise StorageError(f"{self.path}: cannot open the token store: {err}") from None

    def create(self, run: str, role: Role, note: str = "") -> str:
        """A new token granting ``role`` on ``run`` (or every run: ``"*"``)."""
        token = "cvg_" + secrets.token_urlsafe(24)
        self._db.execute(
            "INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?)",
            (_hash(token), token[:10], run, int(role), time.time(), note),
        )
        return token

    def role_for(self, token: str, run: str) -> Role | None:
        """The role ``token`` grants on ``run``, or ``None``."""
        if not token:
            return None
        row = self._db.execute(
            "SELECT role FROM tokens WHERE hash = ? AND (run = ? OR run = ?)",
            (_hash(token), run, ALL_RUNS),
        ).fetchone()
        return Role(row[0]) if row else None

    def revoke(self, token: str) -> bool:
        """Revoke a token; returns whether it existed."""
        return self._db.execute("DELETE FROM tokens WHERE hash = ?", (_hash(token),)).rowcount > 0

    def list(self) -> list[TokenInfo]:
        rows = self._db.execute("SELECT prefix, run, role, created, note FROM tokens").fetchall()
        return [TokenInfo(p, r, Role(role), c, n) for p, r, role, c, n in rows]

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM tokens").fetchone()[0])

    def close(self) -> None:
        self._db.close()
