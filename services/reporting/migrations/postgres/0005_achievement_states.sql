-- Departments record their own (issue 11 §6): each revision of an achievement carries its
-- state. 'approved' counts; 'pending' (recorded or corrected by a participating department,
-- waiting for a lead department) and 'rejected' (with the reason in `reason`) do not.
-- Revisions stored before this were recorded by district administrators: approved.
ALTER TABLE achievements ADD COLUMN state TEXT NOT NULL DEFAULT 'approved';
