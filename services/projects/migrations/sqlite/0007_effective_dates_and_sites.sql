-- The day each stage change took effect ("YYYY-MM-DD", China Standard Time) beside the instant
-- it was recorded (at_ms): a contract signed in 2020 and entered today is dated 2020. '' for
-- transitions recorded before: read as the day of at_ms.
ALTER TABLE project_transitions ADD COLUMN effective_date TEXT NOT NULL DEFAULT '';
-- Where the water user's site is: its gazetteer code (a town's nine digits), from the
-- accepted proposal. '' for projects contracted before the gazetteer (looked up by town name
-- when read).
ALTER TABLE projects ADD COLUMN jurisdiction_code TEXT NOT NULL DEFAULT '';
