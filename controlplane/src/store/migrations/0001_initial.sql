-- Bridgehead store, schema version 1.
--
-- Applied by SqliteStore::open inside one transaction, then
-- `PRAGMA user_version` is set to 1. Never edit a migration that has
-- shipped: add 0002_....sql and list it in sqlite.rs (MIGRATIONS).
--
-- Conventions: SIDs are TEXT (two letters + 32 lowercase hex); times are
-- INTEGER milliseconds since the Unix epoch, UTC; enumerations are TEXT
-- with a CHECK listing their values (Twilio's spellings).

-- Tenants. auth_token is in clear: it is an HMAC key (webhook signatures),
-- not a password, so it cannot be hashed. The file is created mode 0600.
CREATE TABLE accounts (
    sid           TEXT    PRIMARY KEY,
    friendly_name TEXT    NOT NULL,
    auth_token    TEXT    NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('active', 'suspended', 'closed')),
    date_created  INTEGER NOT NULL,
    date_updated  INTEGER NOT NULL
) STRICT;

-- API keys: sid + secret authenticate REST requests and sign access tokens.
CREATE TABLE api_keys (
    sid           TEXT    PRIMARY KEY,
    account_sid   TEXT    NOT NULL REFERENCES accounts (sid),
    friendly_name TEXT    NOT NULL,
    secret        TEXT    NOT NULL,
    date_created  INTEGER NOT NULL
) STRICT;
CREATE INDEX api_keys_by_account ON api_keys (account_sid, date_created);

-- Applications: the voice URL a call's instructions come from.
CREATE TABLE applications (
    sid                    TEXT    PRIMARY KEY,
    account_sid            TEXT    NOT NULL REFERENCES accounts (sid),
    friendly_name          TEXT    NOT NULL,
    voice_url              TEXT,
    voice_method           TEXT    NOT NULL CHECK (voice_method IN ('GET', 'POST')),
    voice_fallback_url     TEXT,
    voice_fallback_method  TEXT    NOT NULL CHECK (voice_fallback_method IN ('GET', 'POST')),
    status_callback        TEXT,
    status_callback_method TEXT    NOT NULL CHECK (status_callback_method IN ('GET', 'POST')),
    date_created           INTEGER NOT NULL,
    date_updated           INTEGER NOT NULL
) STRICT;
CREATE INDEX applications_by_account ON applications (account_sid, date_created);

-- Phone numbers: E.164, unique across all accounts (a call to a number must
-- reach one application). The application must be of the same account
-- (checked by the store); it cannot be deleted while numbers point at it.
CREATE TABLE phone_numbers (
    sid             TEXT    PRIMARY KEY,
    account_sid     TEXT    NOT NULL REFERENCES accounts (sid),
    phone_number    TEXT    NOT NULL UNIQUE,   -- the index for call routing
    application_sid TEXT    REFERENCES applications (sid),
    friendly_name   TEXT    NOT NULL,
    date_created    INTEGER NOT NULL,
    date_updated    INTEGER NOT NULL
) STRICT;
CREATE INDEX phone_numbers_by_account ON phone_numbers (account_sid, date_created);
CREATE INDEX phone_numbers_by_application ON phone_numbers (application_sid);

-- SIP trunks, named within their account.
CREATE TABLE trunks (
    account_sid  TEXT    NOT NULL REFERENCES accounts (sid),
    name         TEXT    NOT NULL,
    outbound     TEXT    NOT NULL,   -- sip: or sips: URI
    username     TEXT,               -- digest credentials toward the carrier
    password     TEXT,
    date_created INTEGER NOT NULL,
    date_updated INTEGER NOT NULL,
    PRIMARY KEY (account_sid, name)
) STRICT;

-- The networks a trunk accepts calls from, one row each. lo and hi are the
-- first and last address of the network as 16 big-endian bytes (IPv4 mapped
-- to ::ffff:a.b.c.d) and v6_prefix_len its prefix length in that view, so
-- that "which trunk allows this source" is a range query on an index:
--   WHERE lo <= :ip AND hi >= :ip ORDER BY v6_prefix_len DESC
CREATE TABLE trunk_allow (
    account_sid   TEXT    NOT NULL,
    trunk_name    TEXT    NOT NULL,
    cidr          TEXT    NOT NULL,   -- as shown: 192.0.2.0/24
    lo            BLOB    NOT NULL,
    hi            BLOB    NOT NULL,
    v6_prefix_len INTEGER NOT NULL,
    PRIMARY KEY (account_sid, trunk_name, cidr),
    FOREIGN KEY (account_sid, trunk_name) REFERENCES trunks (account_sid, name)
        ON DELETE CASCADE ON UPDATE CASCADE
) STRICT;
CREATE INDEX trunk_allow_by_range ON trunk_allow (lo, hi);

-- Call records, one per leg. application_sid, trunk and parent_call_sid are
-- not foreign keys: a record outlives the objects it names.
CREATE TABLE calls (
    sid             TEXT    PRIMARY KEY,
    account_sid     TEXT    NOT NULL REFERENCES accounts (sid),
    parent_call_sid TEXT,
    from_party      TEXT    NOT NULL,
    to_party        TEXT    NOT NULL,
    direction       TEXT    NOT NULL
        CHECK (direction IN ('inbound', 'outbound-api', 'outbound-dial')),
    status          TEXT    NOT NULL
        CHECK (status IN ('queued', 'ringing', 'in-progress', 'completed',
                          'busy', 'failed', 'no-answer', 'canceled')),
    start_time      INTEGER,
    end_time        INTEGER,
    duration_s      INTEGER,
    answered_by     TEXT,
    error_code      INTEGER,
    error_message   TEXT,
    application_sid TEXT,
    trunk           TEXT,
    date_created    INTEGER NOT NULL,
    date_updated    INTEGER NOT NULL
) STRICT;
-- Lists are per account, newest first (the rowid breaks ties in a millisecond).
CREATE INDEX calls_by_account_date ON calls (account_sid, date_created);
CREATE INDEX calls_by_parent ON calls (parent_call_sid) WHERE parent_call_sid IS NOT NULL;
