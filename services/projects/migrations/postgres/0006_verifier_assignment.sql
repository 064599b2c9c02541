-- The verifier body assigned to a project by an administrator (its credit code; '' until
-- assigned): only it verifies the project's periods, and it reads the project.
ALTER TABLE projects ADD COLUMN verifier_org TEXT NOT NULL DEFAULT '';
-- Lists filter by who asks: the parties and the assigned verifier, by credit code.
CREATE INDEX projects_by_company_code ON projects (company_credit_code, id);
CREATE INDEX projects_by_water_user_code ON projects (water_user_credit_code, id);
CREATE INDEX projects_by_verifier ON projects (verifier_org, id);
-- Who raised a period's open dispute ("role:org" or "admin:subject"): never its resolver.
ALTER TABLE periods ADD COLUMN disputed_by TEXT NOT NULL DEFAULT '';
