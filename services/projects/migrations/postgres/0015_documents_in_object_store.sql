-- Evidence documents' bytes move out of the database into the document store (a local folder by
-- default, S3-compatible object storage in production), by SHA-256. Documents uploaded before
-- keep their bytes here and are served from here ('database'); new ones say 'objects' and keep
-- an empty content.
ALTER TABLE documents ADD COLUMN kept_in TEXT NOT NULL DEFAULT 'database';
