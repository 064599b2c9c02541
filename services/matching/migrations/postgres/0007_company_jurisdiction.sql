-- Where a company is registered (GB/T 2260 code, e.g. 320411): its administrators act for it and
-- confirm its certification. '' for companies registered before: the platform's district
-- (Jurisdiction::of_stored).
ALTER TABLE companies ADD COLUMN jurisdiction_code TEXT NOT NULL DEFAULT '';
