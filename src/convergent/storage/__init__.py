"""Durable storage: an op log, a snapshot and content-addressed blobs behind one `Store`
contract, with an in-memory and an SQLite (embedded default) backend."""

from convergent.storage.base import Snapshot, Store, StoredOp
from convergent.storage.memory import MemoryStore
from convergent.storage.sqlite import SQLiteStore

__all__ = ["MemoryStore", "SQLiteStore", "Snapshot", "Store", "StoredOp"]
