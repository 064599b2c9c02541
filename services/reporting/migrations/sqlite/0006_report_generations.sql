-- Reports kept in memory (issue 11: a province's roll-up reads a hundred district reports).
-- A plan's generation goes up in the same transaction as every change to what its report
-- reads: its kept counts, a fact inside its jurisdiction (a hand-over changes the completion
-- counts without changing a count), its code's achievements, a recount. A kept report serves
-- only while its plan's generation is the one it was computed at, so every replica of the
-- service sees every other's writes. A plan without a row is at generation 0.
CREATE TABLE report_generations (
    plan_id    TEXT PRIMARY KEY,
    generation BIGINT NOT NULL
);
