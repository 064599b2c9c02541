-- The water user's town as the gazetteer codes it (nine digits, e.g. 320411004 新桥街道), beside
-- its Chinese name in `town`. '' for units registered before the gazetteer (looked up by town
-- name when read; free-text towns stay readable).
ALTER TABLE water_users ADD COLUMN jurisdiction_code TEXT NOT NULL DEFAULT '';
