//! Where evidence documents' bytes are kept: by their SHA-256, on the local filesystem by
//! default and in S3-compatible object storage in production, through `object_store`.
//!
//! A service's database holds what a document is (its hash, type, size, who uploaded it to what);
//! this store holds its bytes under `<first two hex digits>/<sha256>` (in the folder, or under
//! the prefix of the bucket). Content addressing makes a write idempotent (the same bytes land
//! on the same name), so the bytes are written before the database row that names them: a
//! failure between the two leaves an unnamed object, never a row without its bytes. A read recomputes the hash and refuses bytes
//! that no longer match it (storage that was tampered with or damaged).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// The bytes of documents by SHA-256.
#[derive(Clone, Debug)]
pub struct DocumentStore {
    objects: Arc<dyn ObjectStore>,
    /// Where, for logs and errors: a folder or `s3://bucket/prefix`.
    location: String,
    /// The prefix of every object (the path of an `s3://bucket/prefix` URL).
    prefix: String,
}

/// The lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn is_sha256(text: &str) -> bool {
    text.len() == 64
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

impl DocumentStore {
    /// The store at `location`: `s3://bucket[/prefix]` (credentials, region and endpoint from
    /// the usual `AWS_*` variables: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
    /// `AWS_ENDPOINT` for an S3-compatible server, `AWS_ALLOW_HTTP=true` for one without TLS),
    /// `file:///folder`, or a plain folder (created if missing).
    pub fn open(location: &str) -> anyhow::Result<DocumentStore> {
        Self::open_with(location, &BTreeMap::new())
    }

    /// As [`DocumentStore::open`], an `s3://` store configured by `options` too (by
    /// `object_store`'s names, e.g. `aws_endpoint`, `aws_access_key_id`), over the variables.
    pub fn open_with(
        location: &str,
        options: &BTreeMap<String, String>,
    ) -> anyhow::Result<DocumentStore> {
        if let Some(rest) = location.strip_prefix("s3://") {
            // reqwest is built without a TLS provider of its own: rustls on ring, as everywhere.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                anyhow::bail!("documents location {location:?} names no bucket");
            }
            let mut builder =
                object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
            for (key, value) in options {
                let key = key
                    .to_ascii_lowercase()
                    .parse()
                    .with_context(|| format!("documents option {key:?}"))?;
                builder = builder.with_config(key, value);
            }
            let s3 = builder
                .build()
                .with_context(|| format!("documents location {location:?}"))?;
            return Ok(DocumentStore {
                objects: Arc::new(s3),
                location: location.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        let folder = location.strip_prefix("file://").unwrap_or(location);
        if folder.contains("://") {
            anyhow::bail!(
                "documents location {location:?}: give a folder, file:///folder or s3://bucket"
            );
        }
        if !options.is_empty() {
            anyhow::bail!("documents options are for an s3:// location, not the folder {folder}");
        }
        Self::in_folder(Path::new(folder))
    }

    /// The store in `folder` on the local filesystem (created if missing).
    pub fn in_folder(folder: &Path) -> anyhow::Result<DocumentStore> {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("creating the documents folder {}", folder.display()))?;
        let local = object_store::local::LocalFileSystem::new_with_prefix(folder)
            .with_context(|| format!("the documents folder {}", folder.display()))?;
        Ok(DocumentStore {
            objects: Arc::new(local),
            location: folder.display().to_string(),
            prefix: String::new(),
        })
    }

    /// Where the bytes are kept, as configured.
    pub fn location(&self) -> &str {
        &self.location
    }

    fn path(&self, sha256: &str) -> Result<ObjectPath> {
        if !is_sha256(sha256) {
            return Err(Error::invalid(
                "sha256",
                "64 lowercase hexadecimal digits, the document's SHA-256",
            ));
        }
        let name = format!("{}/{sha256}", &sha256[..2]);
        Ok(if self.prefix.is_empty() {
            ObjectPath::from(name)
        } else {
            ObjectPath::from(format!("{}/{name}", self.prefix))
        })
    }

    /// Keeps `content` and returns its SHA-256 (the same bytes twice are kept once).
    pub async fn put(&self, content: &[u8]) -> Result<String> {
        let sha = sha256_hex(content);
        let path = self.path(&sha)?;
        self.objects
            .put(&path, content.to_vec().into())
            .await
            .map_err(|e| self.failed("writing", &sha, e))?;
        Ok(sha)
    }

    /// The bytes of document `sha256`, checked against it.
    pub async fn get(&self, sha256: &str) -> Result<Vec<u8>> {
        let path = self.path(sha256)?;
        let got = match self.objects.get(&path).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::Internal(anyhow::anyhow!(
                    "document {sha256} is recorded but its bytes are not in {}",
                    self.location
                )));
            }
            Err(e) => return Err(self.failed("reading", sha256, e)),
        };
        let bytes = got
            .bytes()
            .await
            .map_err(|e| self.failed("reading", sha256, e))?;
        if sha256_hex(&bytes) != sha256 {
            return Err(Error::Internal(anyhow::anyhow!(
                "document {sha256} in {} no longer has that SHA-256: its bytes were changed",
                self.location
            )));
        }
        Ok(bytes.to_vec())
    }

    fn failed(&self, doing: &str, sha256: &str, e: object_store::Error) -> Error {
        Error::Internal(
            anyhow::Error::new(e)
                .context(format!("{doing} document {sha256} in {}", self.location)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_folder_keeps_bytes_by_their_hash_and_refuses_changed_ones() {
        let dir = tempfile::tempdir().expect("dir");
        let store = DocumentStore::open(&dir.path().display().to_string()).expect("store");
        let sha = store.put(b"%PDF-1.7 contract").await.expect("put");
        assert_eq!(sha, sha256_hex(b"%PDF-1.7 contract"));
        // The same bytes again: the same name, nothing new.
        assert_eq!(store.put(b"%PDF-1.7 contract").await.expect("again"), sha);
        assert_eq!(store.get(&sha).await.expect("get"), b"%PDF-1.7 contract");
        let file = dir.path().join(&sha[..2]).join(&sha);
        assert!(file.is_file(), "kept at {}", file.display());
        // Someone edits the file in place: the read refuses it.
        std::fs::write(&file, b"%PDF-1.7 forged").expect("tamper");
        let err = store.get(&sha).await.expect_err("changed bytes");
        assert!(err.to_string().contains("were changed"), "{err}");
        std::fs::remove_file(&file).expect("remove");
        let err = store.get(&sha).await.expect_err("missing bytes");
        assert!(err.to_string().contains("not in"), "{err}");
        // Not a hash: refused before any path is made of it.
        assert!(matches!(
            store.get("../../etc/passwd").await,
            Err(Error::InvalidArgument { .. })
        ));
    }

    #[test]
    fn locations_are_a_folder_a_file_url_or_an_s3_bucket() {
        assert!(DocumentStore::open("http://example.com/x").is_err());
        assert!(DocumentStore::open("s3://").is_err());
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("file://{}", dir.path().join("docs").display());
        let store = DocumentStore::open(&url).expect("file url");
        assert!(dir.path().join("docs").is_dir());
        assert!(store.location().ends_with("docs"));
    }
}
