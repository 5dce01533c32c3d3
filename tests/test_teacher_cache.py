"""The SQLite response cache: round trip, persistence, and refusing files that are not it."""

import sqlite3

import pytest

from nerdistill.teacher.cache import CachedResponse, CacheError, ResponseCache


def test_round_trip_and_persistence(tmp_path):
    path = tmp_path / "deep" / "teacher.sqlite"
    with ResponseCache(path) as cache:
        assert cache.get("k") is None
        cache.put("k", "model", "standard@1", CachedResponse("EU | ORG", "stop", 10, 3))
    with ResponseCache(path) as cache:
        assert cache.get("k") == CachedResponse("EU | ORG", "stop", 10, 3)
        assert len(cache) == 1


def test_each_put_is_committed_at_once(tmp_path):
    path = tmp_path / "teacher.sqlite"
    cache = ResponseCache(path)
    cache.put("a", "m", "p@1", CachedResponse("x", "stop", 1, 1))
    other = sqlite3.connect(path)  # another process would see it before this one closes
    assert other.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 1
    other.close()
    cache.close()


def test_garbage_file_is_a_clear_error_and_left_alone(tmp_path):
    path = tmp_path / "teacher.sqlite"
    path.write_bytes(b"this is not a database at all" * 100)
    before = path.read_bytes()
    with pytest.raises(CacheError, match=f"{path}: not a usable nerdistill teacher cache"):
        ResponseCache(path)
    assert path.read_bytes() == before


def test_foreign_sqlite_file_is_refused_not_reset(tmp_path):
    path = tmp_path / "other.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE users (name TEXT)")
    db.execute("INSERT INTO users VALUES ('alice')")
    db.commit()
    db.close()
    with pytest.raises(CacheError, match="not a nerdistill teacher cache"):
        ResponseCache(path)
    assert sqlite3.connect(path).execute("SELECT name FROM users").fetchall() == [("alice",)]


def test_other_schema_version_is_refused(tmp_path):
    path = tmp_path / "teacher.sqlite"
    ResponseCache(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value='nerdistill.teacher.cache/0' WHERE name='schema'")
    db.commit()
    db.close()
    with pytest.raises(CacheError, match="found nerdistill.teacher.cache/0"):
        ResponseCache(path)


def test_truncated_database_is_an_error(tmp_path):
    path = tmp_path / "teacher.sqlite"
    with ResponseCache(path) as cache:
        for i in range(200):
            cache.put(f"k{i}", "m", "p@1", CachedResponse("x" * 500, "stop", 1, 1))
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CacheError):
        ResponseCache(path)
