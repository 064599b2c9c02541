-- Organizations belong to a jurisdiction (GB/T 2260 administrative division code, six digits)
-- and, for a department of a district office, to a department (the plans' code). Rows from
-- before have '' and are given the platform's district (the `district_code` setting) when the
-- service starts (`Store::settle_jurisdictions`): the district is a setting, not SQL.
ALTER TABLE organizations ADD COLUMN jurisdiction TEXT NOT NULL DEFAULT '';
ALTER TABLE organizations ADD COLUMN department TEXT NOT NULL DEFAULT '';
-- Lists of a jurisdiction (BETWEEN its lowest and highest code) in credit-code order.
CREATE INDEX organizations_jurisdiction ON organizations (jurisdiction, credit_code);
