-- Every write to offerings or companies bumps the one catalog_version row, so writers queue on
-- that row's lock until they commit. Bumped by a statement trigger, the lock was taken at the
-- INSERT and held across the rest of the transaction's round trips; bumped by a deferred
-- constraint trigger it is taken at COMMIT and held only while the commit is made durable.
-- The meaning is unchanged: the counter moves in the writing transaction, once it is certain.
DROP TRIGGER offerings_catalog ON offerings;
DROP TRIGGER companies_catalog ON companies;
CREATE CONSTRAINT TRIGGER offerings_catalog AFTER INSERT OR UPDATE OR DELETE ON offerings
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bump_catalog_version();
CREATE CONSTRAINT TRIGGER companies_catalog AFTER INSERT OR UPDATE OR DELETE ON companies
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bump_catalog_version();
