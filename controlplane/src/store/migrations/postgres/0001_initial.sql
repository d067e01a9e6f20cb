-- Bridgehead store on PostgreSQL, schema version 1: the tables, columns and
-- constraints of ../0001_initial.sql (SQLite), in PostgreSQL's types.
--
-- Applied by PostgresStore::open inside one transaction that holds the
-- store's advisory lock, together with the row (1, '0001_initial') in
-- schema_version: the schema and its number change together or not at all,
-- and appliances starting at once apply it once. Never edit a migration that
-- has shipped: add 0002_....sql here AND beside the SQLite one, with the same
-- number, and list it in postgres.rs (MIGRATIONS).
--
-- Differences from the SQLite file, each for a reason:
-- * times and counts are BIGINT (SQLite's INTEGER is 64-bit too);
-- * trunk_allow.lo/hi are BYTEA: compared byte by byte, as SQLite's BLOBs;
-- * every table has `seq`, an identity column standing for SQLite's implicit
--   rowid: the insertion order that breaks ties between rows created in the
--   same millisecond (lists are oldest or newest first);
-- * config_version and its triggers, which SQLite does not need: one
--   appliance's SqliteStore sees its own writes, but a fleet's appliances
--   must learn of each other's (Store::config_version, docs/store.md).

-- Tenants. auth_token is in clear: it is an HMAC key (webhook signatures),
-- not a password, so it cannot be hashed.
CREATE TABLE accounts (
    sid           TEXT   PRIMARY KEY,
    friendly_name TEXT   NOT NULL,
    auth_token    TEXT   NOT NULL,
    status        TEXT   NOT NULL CHECK (status IN ('active', 'suspended', 'closed')),
    date_created  BIGINT NOT NULL,
    date_updated  BIGINT NOT NULL,
    seq           BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE
);

-- API keys: sid + secret authenticate REST requests and sign access tokens.
CREATE TABLE api_keys (
    sid           TEXT   PRIMARY KEY,
    account_sid   TEXT   NOT NULL REFERENCES accounts (sid),
    friendly_name TEXT   NOT NULL,
    secret        TEXT   NOT NULL,
    date_created  BIGINT NOT NULL,
    seq           BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE
);
CREATE INDEX api_keys_by_account ON api_keys (account_sid, date_created);

-- Applications: the voice URL a call's instructions come from.
CREATE TABLE applications (
    sid                    TEXT   PRIMARY KEY,
    account_sid            TEXT   NOT NULL REFERENCES accounts (sid),
    friendly_name          TEXT   NOT NULL,
    voice_url              TEXT,
    voice_method           TEXT   NOT NULL CHECK (voice_method IN ('GET', 'POST')),
    voice_fallback_url     TEXT,
    voice_fallback_method  TEXT   NOT NULL CHECK (voice_fallback_method IN ('GET', 'POST')),
    status_callback        TEXT,
    status_callback_method TEXT   NOT NULL CHECK (status_callback_method IN ('GET', 'POST')),
    date_created           BIGINT NOT NULL,
    date_updated           BIGINT NOT NULL,
    seq                    BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE
);
CREATE INDEX applications_by_account ON applications (account_sid, date_created);

-- Phone numbers: E.164, unique across all accounts (a call to a number must
-- reach one application). The application must be of the same account
-- (checked by the store); it cannot be deleted while numbers point at it.
CREATE TABLE phone_numbers (
    sid             TEXT   PRIMARY KEY,
    account_sid     TEXT   NOT NULL REFERENCES accounts (sid),
    phone_number    TEXT   NOT NULL UNIQUE,   -- the index for call routing
    application_sid TEXT   REFERENCES applications (sid),
    friendly_name   TEXT   NOT NULL,
    date_created    BIGINT NOT NULL,
    date_updated    BIGINT NOT NULL,
    seq             BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE
);
CREATE INDEX phone_numbers_by_account ON phone_numbers (account_sid, date_created);
CREATE INDEX phone_numbers_by_application ON phone_numbers (application_sid);

-- SIP trunks, named within their account.
CREATE TABLE trunks (
    account_sid  TEXT   NOT NULL REFERENCES accounts (sid),
    name         TEXT   NOT NULL,
    outbound     TEXT   NOT NULL,   -- sip: or sips: URI
    username     TEXT,              -- digest credentials toward the carrier
    password     TEXT,
    date_created BIGINT NOT NULL,
    date_updated BIGINT NOT NULL,
    seq          BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    PRIMARY KEY (account_sid, name)
);

-- The networks a trunk accepts calls from, one row each. lo and hi are the
-- first and last address of the network as 16 big-endian bytes (IPv4 mapped
-- to ::ffff:a.b.c.d) and v6_prefix_len its prefix length in that view, so
-- that "which trunk allows this source" is a range query on an index:
--   WHERE lo <= $1 AND hi >= $1 ORDER BY v6_prefix_len DESC
CREATE TABLE trunk_allow (
    account_sid   TEXT    NOT NULL,
    trunk_name    TEXT    NOT NULL,
    cidr          TEXT    NOT NULL,   -- as shown: 192.0.2.0/24
    lo            BYTEA   NOT NULL,
    hi            BYTEA   NOT NULL,
    v6_prefix_len INTEGER NOT NULL,
    seq           BIGINT  GENERATED ALWAYS AS IDENTITY UNIQUE,
    PRIMARY KEY (account_sid, trunk_name, cidr),
    FOREIGN KEY (account_sid, trunk_name) REFERENCES trunks (account_sid, name)
        ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE INDEX trunk_allow_by_range ON trunk_allow (lo, hi);

-- Call records, one per leg. application_sid, trunk and parent_call_sid are
-- not foreign keys: a record outlives the objects it names.
CREATE TABLE calls (
    sid             TEXT   PRIMARY KEY,
    account_sid     TEXT   NOT NULL REFERENCES accounts (sid),
    parent_call_sid TEXT,
    from_party      TEXT   NOT NULL,
    to_party        TEXT   NOT NULL,
    direction       TEXT   NOT NULL
        CHECK (direction IN ('inbound', 'outbound-api', 'outbound-dial')),
    status          TEXT   NOT NULL
        CHECK (status IN ('queued', 'ringing', 'in-progress', 'completed',
                          'busy', 'failed', 'no-answer', 'canceled')),
    start_time      BIGINT,
    end_time        BIGINT,
    duration_s      BIGINT,
    answered_by     TEXT,
    error_code      BIGINT,
    error_message   TEXT,
    application_sid TEXT,
    trunk           TEXT,
    date_created    BIGINT NOT NULL,
    date_updated    BIGINT NOT NULL,
    seq             BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE
);
-- Lists are per account, newest first (seq breaks ties in a millisecond).
CREATE INDEX calls_by_account_date ON calls (account_sid, date_created, seq);
CREATE INDEX calls_by_parent ON calls (parent_call_sid) WHERE parent_call_sid IS NOT NULL;

-- A number every change to the configuration tables raises, so that each
-- appliance can tell its caches (API keys, call routes) are stale when
-- another appliance, or an operator's psql, changed something. One row.
-- A statement trigger raises it and notifies the listeners (LISTEN
-- bridgehead_config) with the new number; the store also locks this row
-- first in each of its configuration writes, so that those writes run one at
-- a time across the fleet (no lost edits, no deadlocks between them).
CREATE TABLE config_version (
    one     BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    version BIGINT  NOT NULL
);
INSERT INTO config_version (version) VALUES (0);

CREATE FUNCTION bridgehead_config_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v BIGINT;
BEGIN
    UPDATE config_version SET version = version + 1 RETURNING version INTO v;
    PERFORM pg_notify('bridgehead_config', v::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER accounts_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION bridgehead_config_changed();
CREATE TRIGGER api_keys_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION bridgehead_config_changed();
CREATE TRIGGER applications_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON applications
    FOR EACH STATEMENT EXECUTE FUNCTION bridgehead_config_changed();
CREATE TRIGGER phone_numbers_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON phone_numbers
    FOR EACH STATEMENT EXECUTE FUNCTION bridgehead_config_changed();
CREATE TRIGGER trunks_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON trunks
    FOR EACH STATEMENT EXECUTE FUNCTION bridgehead_config_changed();
CREATE TRIGGER trunk_allow_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON trunk_allow
    FOR EACH STATEMENT EXECUTE FUNCTION bridgehead_config_changed();
