"""Issue 16: API keys listed by prefix, revoked, rotated and expiring; failed authentications throttled
and audited; verdicts, training and new analysts need a key; the single-key store migrates."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from counterscan.ranking.ranker import cold_start_scores
from counterscan.registry.members import add_member, authenticate, hash_api_key, issue_key
from counterscan.store import Store
from counterscan.store import schema as t
from tests.conftest import Cli
from tests.old_schemas import schema_v1 as v1
from tests.test_api import Server, _client, server  # noqa: F401  (the real HTTP server fixture)


def _rows(cli: Cli, table: sa.Table) -> list[sa.Row[tuple[object, ...]]]:
    store = cli.store()
    try:
        with store.engine.connect() as conn:
            return list(conn.execute(sa.select(table)))
    finally:
        store.close()


def _key_of(output: str) -> str:
    return output.strip().splitlines()[-1]


@pytest.mark.slow
def test_keys_listed_by_prefix_added_rotated_revoked_and_expiring(cli: Cli) -> None:
    first = cli.add_member("acme-group")
    listed = cli("members", "keys", "list").stdout
    assert first[:11] in listed and first not in listed and first[11:] not in listed and "live" in listed

    second = _key_of(cli("members", "keys", "add", "acme-group").stdout)
    for key in (first, second):
        cli("brands", "add", f"Brand{key[3:11]}", "--member", "acme-group", "--key", key)

    # Revoked: refused on the very next command, exit 5, nothing written.
    assert "revoked key" in cli("members", "keys", "revoke", first[:11], "--key", second).stdout
    refused = cli("brands", "add", "Late", "--member", "acme-group", "--key", first, expect=5)
    assert "was revoked" in refused.stderr and "Traceback" not in refused.stderr
    assert "Late" not in cli("brands", "list").stdout

    # Rotated: the new key works, every other key of the member is revoked at once.
    third = _key_of(cli("members", "keys", "rotate", "acme-group", "--key", second).stdout)
    cli("brands", "add", "Rotated", "--member", "acme-group", "--key", third)
    assert "was revoked" in cli("brands", "add", "Old", "--member", "acme-group", "--key", second, expect=5).stderr
    statuses = {row["prefix"]: row["status"] for row in _json_keys(cli)}
    assert statuses == {first[:11]: "revoked", second[:11]: "revoked", third[:11]: "live"}

    # Expiring: a key made to last one second is refused once it has passed.
    hour = _key_of(cli("members", "keys", "add", "acme-group", "--expires-in", "1h", "--key", third).stdout)
    cli("brands", "add", "Quick", "--member", "acme-group", "--key", hour)
    assert {row["prefix"]: row["expires_at"] for row in _json_keys(cli)}[hour[:11]]
    short = _key_of(cli("members", "keys", "add", "acme-group", "--expires-in", "1s", "--key", third).stdout)
    time.sleep(1.2)
    assert "expired" in cli("brands", "add", "Slow", "--member", "acme-group", "--key", short, expect=5).stderr
    assert (
        "bad duration"
        in cli("members", "keys", "add", "acme-group", "--expires-in", "soon", "--key", third, expect=2).stderr
    )

    # Only the member itself (or an analyst) manages its keys.
    rival = cli.add_member("rival", use=False)
    denied = cli("members", "keys", "revoke", third[:11], "--as", "rival", "--key", rival, expect=5)
    assert "may not manage the keys" in denied.stderr
    audit = " ".join(str(row) for row in _rows(cli, t.audit))
    assert "key.revoke" in audit and "key.rotate" in audit
    for key in (first, second, third, hour, short, rival):
        assert key not in audit and key[11:] not in audit


def _json_keys(cli: Cli) -> list[dict[str, str]]:
    return list(json.loads(cli("members", "keys", "list", "--format", "json").stdout))


def test_failed_authentications_are_throttled_per_client_and_audited(cli: Cli) -> None:
    key = cli.add_member("acme-group")
    env = {"COUNTERSCAN_AUTH_MAX_FAILURES_PER_CLIENT": "3", "COUNTERSCAN_AUTH_MAX_FAILURES_PER_KEY": "100"}
    for attempt in range(3):
        wrong = f"cs_0000000{attempt}_{'x' * 43}"
        failed = cli("brands", "add", "X", "--member", "acme-group", "--key", wrong, env=env, expect=5)
        assert "wrong API key" in failed.stderr
    # Over the limit: even the right key is refused unchecked until the window passes.
    throttled = cli("brands", "add", "X", "--member", "acme-group", "--key", key, env=env, expect=5)
    assert "too many failed authentications" in throttled.stderr
    failures = [row for row in _rows(cli, t.audit) if row.action == "auth.failed"]
    assert len(failures) == 3 and {row.actor for row in failures} == {"acme-group"}
    assert all(row.details["client"].startswith("cli:") for row in failures)
    # Without the lower limit, the right key works again.
    cli("brands", "add", "X", "--member", "acme-group", "--key", key)


def test_failures_are_throttled_per_key_prefix(cli: Cli) -> None:
    key = cli.add_member("acme-group")
    env = {"COUNTERSCAN_AUTH_MAX_FAILURES_PER_KEY": "2"}
    guesses = [key[:12] + "A" * 10, key[:12] + "B" * 10]
    for guess in guesses:
        cli("brands", "add", "X", "--member", "acme-group", "--key", guess, env=env, expect=5)
    throttled = cli("brands", "add", "X", "--member", "acme-group", "--key", key, env=env, expect=5)
    assert f"for key {key[:11]}" in throttled.stderr


def test_verdicts_training_and_new_analysts_need_a_key(cli: Cli) -> None:
    # The first analyst of a store needs no key; every later one needs an analyst's.
    ana = cli.add_member("ana", role="analyst", use=False)
    refused = cli("members", "add", "eve", "--role", "analyst", expect=5)
    assert "analyst's API key" in refused.stderr
    owner = cli.add_member("acme-group", use=False)
    assert "not an analyst" in cli("members", "add", "eve", "--role", "analyst", "--key", owner, expect=5).stderr
    eve = _key_of(cli("members", "add", "eve", "--role", "analyst", "--as", "ana", "--key", ana).stdout)
    adds = [row for row in _rows(cli, t.audit) if row.action == "member.add"]
    assert [(row.target, row.actor) for row in adds] == [
        ("ana", "operator"),
        ("acme-group", "operator"),
        ("eve", "ana"),
    ]
    # train: refused without a key, with a member's key, and with a name from the environment.
    assert "analyst's API key" in cli("train", expect=5).stderr
    assert "not an analyst" in cli("train", "--key", owner, expect=5).stderr
    not_hers = cli("train", "--key", owner, env={"COUNTERSCAN_ANALYST": "ana"}, expect=5).stderr
    assert "does not belong to member 'ana'" in not_hers
    assert "training needs" in cli("train", "--key", eve, expect=6).stderr


def test_revoked_key_gets_401_at_once_on_the_api(server: Server) -> None:  # noqa: F811
    with _client(server, server.owner_key) as client:
        assert client.get("/v1/me").status_code == 200
        store = Store.open(server.settings.database_url)
        try:
            [key] = store.api_keys("acme-group")
            store.revoke_api_keys([key.key_id], actor="test", reason="leaked")
        finally:
            store.close()
        response = client.get("/v1/me")
        assert response.status_code == 401 and "revoked" in response.json()["detail"]
        assert server.owner_key not in response.text


def test_api_throttles_wrong_keys_with_429(server: Server) -> None:  # noqa: F811
    statuses = []
    for attempt in range(40):
        with _client(server, f"cs_{attempt:08x}_{'y' * 43}") as client:
            statuses.append(client.get("/v1/me").status_code)
    # The default policy: 20 failures per client in 5 minutes, then 429 with Retry-After.
    assert statuses[:20] == [401] * 20 and statuses[20:] == [429] * 20
    with _client(server, server.analyst_key) as client:
        response = client.get("/v1/me")
        assert response.status_code == 429 and int(response.headers["retry-after"]) > 0
    store = Store.open(server.settings.database_url)
    try:
        audit = store.audit_log(limit=100)
    finally:
        store.close()
    failed = [entry for entry in audit if entry.action == "auth.failed"]
    assert len(failed) == 20 and all(entry.details["client"] == "http:127.0.0.1" for entry in failed)


def test_a_single_key_store_migrates_to_member_keys(db_url: str) -> None:
    """A store made by the previous version (members.key_hash, schema version 1) keeps its keys."""
    engine = sa.create_engine(db_url)
    legacy_key = "cs_" + "L" * 43
    moment = datetime.now(UTC)
    with engine.begin() as conn:
        v1.metadata.create_all(conn)
        conn.execute(sa.insert(v1.schema_version).values(version=1, applied_at=moment))
        conn.execute(sa.insert(v1.lock_guard).values(guard_id=1))
        conn.execute(
            sa.insert(v1.members),
            [
                {"name": "acme-group", "role": "member", "key_hash": hash_api_key(legacy_key), "created_at": moment},
                {"name": "ana", "role": "analyst", "key_hash": hash_api_key("cs_" + "A" * 43), "created_at": moment},
            ],
        )
    engine.dispose()

    # The upgrade past version 2 scores the stored evidence, as the CLI and the API have it do.
    store = Store.open(db_url, upgrade_scorer=cold_start_scores)
    try:
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.max(t.schema_version.c.version))).scalar_one() == t.LATEST_VERSION
            assert "key_hash" not in {column["name"] for column in sa.inspect(conn).get_columns("members")}
        keys = {key.member: key for key in store.api_keys()}
        assert {key.prefix for key in keys.values()} == {"(legacy)"} and set(keys) == {"acme-group", "ana"}
        member = authenticate(store, "acme-group", legacy_key, client="test")
        assert member.name == "acme-group"
        # A legacy key can be rotated away like any other.
        rotated = issue_key(store, member, "acme-group", revoke_others=True)
        assert authenticate(store, "acme-group", rotated.api_key, client="test").name == "acme-group"
        with pytest.raises(Exception, match="revoked"):
            authenticate(store, "acme-group", legacy_key, client="test")
        assert issue_key(store, member, "acme-group").info.status == "live"
    finally:
        store.close()


REFUSE_REVOCATION = {
    "sqlite": [
        "CREATE TRIGGER refuse_revocation BEFORE UPDATE OF revoked_at ON member_keys "
        "BEGIN SELECT RAISE(ABORT, 'revocation refused'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_revocation() RETURNS trigger LANGUAGE plpgsql "
        "AS $$ BEGIN RAISE EXCEPTION 'revocation refused'; END $$",
        "CREATE TRIGGER refuse_revocation BEFORE UPDATE OF revoked_at ON member_keys "
        "FOR EACH ROW EXECUTE FUNCTION refuse_revocation()",
    ],
}


def test_a_rotation_adds_the_new_key_only_with_the_old_ones_revoked(store: Store) -> None:
    """One transaction: when revoking the old keys fails, the new key is not there either."""
    made = add_member(store, "acme-group")
    member = authenticate(store, "acme-group", made.api_key, client="test")
    with store.engine.begin() as conn:
        for statement in REFUSE_REVOCATION[conn.dialect.name]:
            conn.exec_driver_sql(statement)
    with pytest.raises(Exception, match="revocation refused"):
        issue_key(store, member, "acme-group", revoke_others=True)
    assert [(key.prefix, key.status) for key in store.api_keys("acme-group")] == [(made.api_key[:11], "live")]
    assert "key.rotate" not in {entry.action for entry in store.audit_log(limit=20)}
    assert authenticate(store, "acme-group", made.api_key, client="test").name == "acme-group"
