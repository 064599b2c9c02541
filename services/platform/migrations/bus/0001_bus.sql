-- The embedded bus's own file (bus.db in the data folder): what the in-process bus carries,
-- kept so that a crash of `cwsm serve` loses nothing the outbox relays handed to it.

-- Each topic's log: `seq` counts from 0 per topic, contiguous; the oldest rows beyond the cap
-- are removed.
CREATE TABLE bus_log (
    topic          TEXT NOT NULL,
    seq            INTEGER NOT NULL,
    event_id       TEXT NOT NULL,
    kind           TEXT NOT NULL,
    payload        BLOB NOT NULL,
    occurred_at_ms INTEGER NOT NULL,
    trace_parent   TEXT NOT NULL,
    PRIMARY KEY (topic, seq)
) WITHOUT ROWID;

-- Each consumer group's cursor: the next `seq` it reads (everything before is acknowledged,
-- that is, its effect committed).
CREATE TABLE bus_groups (
    topic    TEXT NOT NULL,
    grp      TEXT NOT NULL,
    next_seq INTEGER NOT NULL,
    PRIMARY KEY (topic, grp)
) WITHOUT ROWID;

-- Events set aside after their handler kept failing, with the last error.
CREATE TABLE bus_dead_letters (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    topic          TEXT NOT NULL,
    grp            TEXT NOT NULL,
    event_id       TEXT NOT NULL,
    kind           TEXT NOT NULL,
    payload        BLOB NOT NULL,
    occurred_at_ms INTEGER NOT NULL,
    trace_parent   TEXT NOT NULL,
    error          TEXT NOT NULL,
    attempts       INTEGER NOT NULL,
    dead_at_ms     INTEGER NOT NULL
);
