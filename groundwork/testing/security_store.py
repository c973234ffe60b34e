"""The conformance suite of :class:`~groundwork.security.store.SecurityDatabase` backends.

A backend's test module subclasses :class:`SecurityStoreConformance` and provides a ``security_db``
fixture that yields an empty, migrated database::

    class TestSQLiteSecurity(SecurityStoreConformance):
        @pytest.fixture
        def security_db(self, tmp_path):
            db = open_sqlite_security(tmp_path)
            yield db
            db.close()

The suite drives :class:`~groundwork.security.keys.KeyStore` and
:class:`~groundwork.security.audit.AuditLog` over it: keys stored hashed (never the token), revocation
and expiry, audit filters and order, and the append-only audit log enforced by the database itself.
"""

from __future__ import annotations

import threading
from typing import Any, cast

import pytest

from groundwork.errors import AuthError, InputError, NotFoundError
from groundwork.security.audit import AuditEvent, AuditLog
from groundwork.security.keys import KeyStore, hash_key
from groundwork.security.store import SecurityDatabase


class _Patched:
    """A security database whose ``query`` is replaced (the rest passes through)."""

    def __init__(self, db: SecurityDatabase, query: Any) -> None:
        self._db = db
        self.query = query

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


class SecurityStoreConformance:
    """Behaviour every security database must show through the key store and the audit log."""

    def test_a_created_key_authenticates_and_only_its_hash_is_stored(
        self, security_db: SecurityDatabase
    ) -> None:
        keys = KeyStore(security_db)
        token, key = keys.create("ci bot", "builder", ["ops", "eng", "ops"], rpm=30, now=1000.0)
        assert key.groups == ("eng", "ops")
        got = keys.authenticate(token, now=1001.0)
        assert (got.prefix, got.name, got.role, got.groups, got.rpm) == (
            key.prefix,
            "ci bot",
            "builder",
            ("eng", "ops"),
            30,
        )
        assert got.created_at == 1000.0  # a full-precision timestamp
        rows = security_db.query("SELECT hash FROM api_keys WHERE prefix = ?", (key.prefix,))
        assert rows[0][0] == hash_key(token)
        assert all(
            token not in str(value) for row in security_db.query("SELECT * FROM api_keys") for value in row
        )

    def test_a_wrong_secret_with_a_known_prefix_is_refused(self, security_db: SecurityDatabase) -> None:
        keys = KeyStore(security_db)
        token, _ = keys.create("a", "user")
        forged = token[:12] + ("A" if token[12] != "A" else "B") + token[13:]
        with pytest.raises(AuthError, match="invalid API key"):
            keys.authenticate(forged)
        with pytest.raises(AuthError, match="expected"):
            keys.authenticate("not-a-key")

    def test_revoked_and_expired_keys_are_refused_and_listed(self, security_db: SecurityDatabase) -> None:
        keys = KeyStore(security_db)
        t1, k1 = keys.create("first", "admin", now=100.0)
        t2, k2 = keys.create("second", "user", expires_in=60, now=200.0)
        revoked = keys.revoke(f"gw_{k1.prefix}", now=300.0)
        assert revoked.revoked_at == 300.0
        assert keys.revoke(k1.prefix, now=400.0).revoked_at == 300.0  # revoking twice keeps the first time
        with pytest.raises(AuthError, match="revoked"):
            keys.authenticate(t1, now=301.0)
        assert keys.authenticate(t2, now=259.0).prefix == k2.prefix
        with pytest.raises(AuthError, match="expired"):
            keys.authenticate(t2, now=261.0)
        assert [k.prefix for k in keys.list()] == [k1.prefix, k2.prefix]
        assert keys.get(k2.prefix) == k2
        assert keys.get("00000000") is None
        with pytest.raises(NotFoundError, match="no API key"):
            keys.revoke("00000000")

    def test_a_verified_key_is_remembered_for_cache_s_and_forgotten_when_revoked(
        self, security_db: SecurityDatabase
    ) -> None:
        keys = KeyStore(security_db, cache_s=5.0)
        token, key = keys.create("svc", "user", expires_in=100, now=1000.0)
        other, _ = keys.create("other", "user", now=1000.0)
        assert keys.verified(token, now=1001.0) is None  # never verified: read the store
        assert keys.authenticate(token, now=1001.0).prefix == key.prefix
        assert keys.authenticate(other, now=1001.0).prefix != key.prefix
        assert keys.verified(f" {token} ", now=1005.9) == keys.authenticate(token, now=1001.0)
        assert keys.verified(token, now=1006.1) is None  # cache_s passed: read the store again
        assert keys.verified(token[:-1] + ("A" if token[-1] != "A" else "B"), now=1002.0) is None
        # revoked elsewhere (another process or replica, its own store): trusted until cache_s passes
        KeyStore(security_db).revoke(key.prefix, now=1002.0)
        assert keys.verified(token, now=1003.0) is not None
        assert keys.verified(token, now=1006.5) is None
        with pytest.raises(AuthError, match="revoked"):
            keys.authenticate(token, now=1006.5)
        # revoked through this store: forgotten at once, and only that key
        third, _ = keys.create("third", "user", now=1000.0)
        assert keys.authenticate(other, now=1010.0) and keys.authenticate(third, now=1010.0)
        keys.revoke(other.split("_")[1], now=1011.0)
        assert keys.verified(other, now=1011.0) is None and keys.verified(third, now=1011.0) is not None
        # expiry is checked on every use, remembered or not
        late, _ = keys.create("late", "user", expires_in=10, now=2000.0)
        keys.authenticate(late, now=2009.0)
        assert keys.verified(late, now=2009.9) is not None and keys.verified(late, now=2010.0) is None
        # a verification that overlaps a revocation through this store is not remembered (it may have
        # read the key before the revocation)
        racing, racing_key = keys.create("racing", "user", now=1000.0)
        query = keys.db.query
        overlapped: list[str] = []

        def revoke_meanwhile(sql: str, params: Any = ()) -> Any:
            rows = query(sql, params)
            if sql.startswith("SELECT hash") and not overlapped:
                overlapped.append(sql)
                keys.revoke(racing_key.prefix, now=1020.0)
            return rows

        keys.db = cast(SecurityDatabase, _Patched(security_db, revoke_meanwhile))
        try:
            assert keys.authenticate(racing, now=1019.0).prefix == racing_key.prefix  # read before it
        finally:
            keys.db = security_db
        assert overlapped and keys.verified(racing, now=1019.5) is None
        # cache_s 0: nothing is remembered
        plain = KeyStore(security_db)
        plain.authenticate(late, now=2001.0)
        assert plain.verified(late, now=2001.0) is None

    def test_bad_key_input_is_refused_before_storage(self, security_db: SecurityDatabase) -> None:
        keys = KeyStore(security_db)
        with pytest.raises(InputError, match="role"):
            keys.create("x", "root")
        with pytest.raises(InputError, match="group"):
            keys.create("x", "user", ["no spaces allowed"])
        assert keys.list() == []

    def test_concurrent_creates_give_distinct_working_keys(self, security_db: SecurityDatabase) -> None:
        keys = KeyStore(security_db)
        tokens: list[str] = []
        lock = threading.Lock()

        def make(n: int) -> None:
            token, _ = keys.create(f"k{n}", "user")
            with lock:
                tokens.append(token)

        threads = [threading.Thread(target=make, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len({keys.authenticate(t).prefix for t in tokens}) == 8

    def test_audit_records_come_back_newest_first_and_filtered(self, security_db: SecurityDatabase) -> None:
        audit = AuditLog(security_db)
        audit.record(AuditEvent("key.create", "cli:ann", target="gw_1", details={"role": "user"}, ts=10.0))
        audit.record(AuditEvent("document.ingest", "bot (gw_2)", target="ops", ts=20.0))
        audit.record(AuditEvent("key.revoke", "cli:ann", outcome="denied", source="10.0.0.1", ts=30.0))
        assert [e.action for e in audit.query()] == ["key.revoke", "document.ingest", "key.create"]
        assert [e.action for e in audit.query(action="key.")] == ["key.revoke", "key.create"]
        assert [e.ts for e in audit.query(since=15.0)] == [30.0, 20.0]
        assert [e.target for e in audit.query(actor="bot (gw_2)")] == ["ops"]
        assert [e.source for e in audit.query(outcome="denied")] == ["10.0.0.1"]
        assert audit.query(action="key.create")[0].details == {"role": "user"}
        assert len(audit.query(limit=1)) == 1
        assert audit.query(action="100%") == []  # a literal % in a filter is no wildcard and no error
        with pytest.raises(InputError, match="limit"):
            audit.query(limit=0)

    @pytest.mark.parametrize("statement", ["UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log"])
    def test_the_audit_log_is_append_only_in_the_database(
        self, security_db: SecurityDatabase, statement: str
    ) -> None:
        audit = AuditLog(security_db)
        audit.record(AuditEvent("key.create", "cli:ann", ts=10.0))
        with pytest.raises(Exception, match="append-only"):
            security_db.execute(statement)
        assert [(e.action, e.actor) for e in audit.query()] == [("key.create", "cli:ann")]
