-- A register's capacity, litres (the value at which it starts again at 0); 0 when not known.
-- With it a register that goes back is a rollover when the water fits the time, else an
-- impossible reading.
ALTER TABLE meters ADD COLUMN register_capacity_litres BIGINT NOT NULL DEFAULT 0;
