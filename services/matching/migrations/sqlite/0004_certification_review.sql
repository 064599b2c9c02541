-- A company's grade is a claim (certification, with its evidence) until the district confirms
-- it: confirmed_certification is the grade an administrator confirmed ('' for none), with who,
-- when and why. Grades stored before this were self-declared and start unconfirmed.
ALTER TABLE companies ADD COLUMN certification_evidence TEXT NOT NULL DEFAULT '';
ALTER TABLE companies ADD COLUMN confirmed_certification TEXT NOT NULL DEFAULT '';
ALTER TABLE companies ADD COLUMN certification_confirmed_by TEXT NOT NULL DEFAULT '';
ALTER TABLE companies ADD COLUMN certification_confirmed_at_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE companies ADD COLUMN certification_note TEXT NOT NULL DEFAULT '';
