-- Counts kept as they happen, so a report reads a few aggregate rows instead of scanning the
-- facts of every project. For each plan version and counted indicator: the projects counted
-- (once each; the natural key makes a redelivered or re-emitted event change nothing), and the
-- changes of the count per day (China Standard Time, days since 1970-01-01), town and sector:
-- +1 on the day a project counts, -1 on the day a rule that removes terminated projects takes
-- it off. Maintained in the transaction that stores the fact; filled for a plan when it loads.

CREATE TABLE counted_projects (
    plan_id         TEXT NOT NULL,
    indicator_code  TEXT NOT NULL,
    project_id      TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    counted_day     BIGINT NOT NULL,
    -- The day it was taken off the count; -1 while it counts.
    removed_day     BIGINT NOT NULL DEFAULT -1,
    town            TEXT NOT NULL DEFAULT '',
    sector          TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (plan_id, indicator_code, project_id)
);

CREATE TABLE count_changes (
    plan_id         TEXT NOT NULL,
    indicator_code  TEXT NOT NULL,
    day             BIGINT NOT NULL,
    town            TEXT NOT NULL,
    sector          TEXT NOT NULL,
    delta           BIGINT NOT NULL,
    -- The latest instant (ms) of a milestone that changed this row.
    last_ms         BIGINT NOT NULL,
    PRIMARY KEY (plan_id, indicator_code, day, town, sector)
);

-- The same changes summed over all days (a report as of a date after the last change reads
-- these few rows), and summed per day without town and sector (the history of the count).
CREATE TABLE count_cells (
    plan_id         TEXT NOT NULL,
    indicator_code  TEXT NOT NULL,
    town            TEXT NOT NULL,
    sector          TEXT NOT NULL,
    n               BIGINT NOT NULL,
    last_ms         BIGINT NOT NULL,
    PRIMARY KEY (plan_id, indicator_code, town, sector)
);

CREATE TABLE count_days (
    plan_id         TEXT NOT NULL,
    indicator_code  TEXT NOT NULL,
    day             BIGINT NOT NULL,
    delta           BIGINT NOT NULL,
    PRIMARY KEY (plan_id, indicator_code, day)
);

-- Events the consumer could not use, set aside for administrators (ListDeadLetters).
CREATE TABLE dead_letters (
    event_id        TEXT PRIMARY KEY,
    topic           TEXT NOT NULL,
    kind            TEXT NOT NULL,
    reason          TEXT NOT NULL,
    payload_size    BIGINT NOT NULL,
    received_at_ms  BIGINT NOT NULL
);
