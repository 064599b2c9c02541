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
    /// The folder of a store on the local filesystem: its files are made the owner's alone.
    folder: Option<std::path::PathBuf>,
}

/// The lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The most an evidence document may hold.
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;

/// The media type of `content` named `file_name`, told from its first bytes: PDF, PNG, JPEG,
/// or an Office Open XML file (a zip named .xlsx, .docx or .pptx); anything else is refused.
pub fn media_type(file_name: &str, content: &[u8]) -> Result<&'static str> {
    let name = file_name.to_lowercase();
    let office = |ext: &str| name.ends_with(ext);
    let kind = if content.starts_with(b"%PDF-") {
        Some("application/pdf")
    } else if content.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if content.starts_with(b"\xff\xd8\xff") {
        Some("image/jpeg")
    } else if content.starts_with(b"PK\x03\x04") && office(".xlsx") {
        Some("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    } else if content.starts_with(b"PK\x03\x04") && office(".docx") {
        Some("application/vnd.openxmlformats-officedocument.wordprocessingml.document")
    } else if content.starts_with(b"PK\x03\x04") && office(".pptx") {
        Some("application/vnd.openxmlformats-officedocument.presentationml.presentation")
    } else {
        None
    };
    kind.ok_or_else(|| {
        Error::invalid(
            "chunk",
            "not a PDF, PNG, JPEG or Office (.xlsx, .docx, .pptx) document: its first bytes say otherwise",
        )
    })
}

/// The documents `text` cites: each "sha256:" followed by 64 hexadecimal digits (lower-cased).
pub fn cited(text: &str) -> Vec<String> {
    text.match_indices("sha256:")
        .filter_map(|(i, m)| {
            let hex: String = text[i + m.len()..]
                .chars()
                .take_while(char::is_ascii_hexdigit)
                .collect();
            (hex.len() == 64).then(|| hex.to_lowercase())
        })
        .collect()
}

/// An upload as its stream's messages carried it: the first names what the document belongs
/// to and its file; every message carries a chunk of it.
#[derive(Debug)]
pub struct Upload {
    pub owner: String,
    pub file_name: String,
    pub content: Vec<u8>,
}

/// Gathers a client-streamed upload, each message's (owner, file name, chunk) told by `parts`:
/// at most [`MAX_DOCUMENT_BYTES`] (INVALID_ARGUMENT naming the message past it), a file name
/// required, and at least one message (else INVALID_ARGUMENT on `owner_field`).
pub async fn gather_upload<M, F>(
    stream: &mut tonic::Streaming<M>,
    owner_field: &str,
    max_file_name: usize,
    mut parts: F,
) -> std::result::Result<Upload, tonic::Status>
where
    F: FnMut(M) -> (String, String, Vec<u8>),
{
    let mut upload = Upload {
        owner: String::new(),
        file_name: String::new(),
        content: Vec::new(),
    };
    let mut index = 0usize;
    while let Some(m) = stream.message().await? {
        let (owner, file_name, chunk) = parts(m);
        if index == 0 {
            if file_name.chars().count() > max_file_name {
                return Err(Error::invalid(
                    "file_name",
                    format!("at most {max_file_name} characters"),
                )
                .into());
            }
            upload.owner = owner.trim().to_string();
            upload.file_name = file_name.trim().to_string();
            if upload.file_name.is_empty() {
                return Err(Error::invalid("file_name", "required, e.g. 合同.pdf").into());
            }
        }
        if upload.content.len().saturating_add(chunk.len()) > MAX_DOCUMENT_BYTES {
            return Err(Error::invalid(
                format!("messages[{index}].chunk"),
                format!(
                    "the document is beyond {} MiB",
                    MAX_DOCUMENT_BYTES / (1024 * 1024)
                ),
            )
            .into());
        }
        upload.content.extend_from_slice(&chunk);
        index += 1;
    }
    if index == 0 {
        return Err(Error::invalid(owner_field, "required: the stream sent no message").into());
    }
    Ok(upload)
}

/// A stored document's bytes as a server stream's messages: `first` (what it is), then its
/// bytes in chunks of 1 MiB, each made a message by `chunk`.
pub fn download_messages<M>(first: M, content: &[u8], chunk: impl Fn(Vec<u8>) -> M) -> Vec<M> {
    let mut messages = vec![first];
    messages.extend(content.chunks(1024 * 1024).map(|c| chunk(c.to_vec())));
    messages
}

/// Checks a document hash given by a client: 64 hexadecimal digits, returned lower-cased.
pub fn sha256_field(field: &str, text: &str) -> Result<String> {
    let lower = text.trim().to_ascii_lowercase();
    if !is_sha256(&lower) {
        return Err(Error::invalid(field, "64 hexadecimal digits"));
    }
    Ok(lower)
}

/// The document store a service was started with, or why a document cannot be kept.
pub fn configured(documents: Option<&DocumentStore>) -> Result<&DocumentStore> {
    documents.ok_or_else(|| {
        Error::precondition(
            "this server keeps no evidence documents: it was started without a document store (documents_url)",
        )
    })
}

/// A citation of a document `of` (e.g. "this project") does not have: INVALID_ARGUMENT on
/// `field`.
pub fn not_uploaded(field: &str, sha256: &str, of: &str) -> Error {
    Error::invalid(
        field,
        format!("sha256:{sha256} names no evidence document of {of} (UploadEvidence first)"),
    )
}

/// Where a page of documents (oldest first, by upload time then hash) starts: after the
/// (milliseconds, sha256) of its token "ms:sha", or at the first.
pub fn page_after(after: Option<&str>) -> (i64, String) {
    after
        .and_then(|t| t.split_once(':'))
        .map(|(m, s)| (m.parse::<i64>().unwrap_or(i64::MIN), s.to_string()))
        .unwrap_or((i64::MIN, String::new()))
}

/// The page token of a document uploaded at `created_at_ms` (see [`page_after`]).
pub fn page_token(created_at_ms: i64, sha256: &str) -> String {
    format!("{created_at_ms}:{sha256}")
}

/// Sets `path`'s permissions to `mode` (on Unix).
fn private(path: &Path, mode: u32) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("making {} private", path.display()))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
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
                folder: None,
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
        // Contracts and invoices: the owner's alone, like the rest of the data folder.
        crate::db::create_private_dir(folder)?;
        let local = object_store::local::LocalFileSystem::new_with_prefix(folder)
            .with_context(|| format!("the documents folder {}", folder.display()))?;
        Ok(DocumentStore {
            objects: Arc::new(local),
            location: folder.display().to_string(),
            prefix: String::new(),
            folder: Some(folder.to_path_buf()),
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
        if let Some(folder) = &self.folder {
            // object_store writes with the process's umask: tighten what it made.
            private(&folder.join(&sha[..2]), 0o700)
                .and_then(|()| private(&folder.join(&sha[..2]).join(&sha), 0o600))
                .map_err(|e| Error::Internal(e.context(format!("document {sha}"))))?;
        }
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
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777);
            assert_eq!(
                mode(&file).ok(),
                Some(0o600),
                "the document is the owner's alone"
            );
            assert_eq!(mode(&dir.path().join(&sha[..2])).ok(), Some(0o700));
        }
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
    fn evidence_cites_documents_by_their_hash() {
        let sha = "ab".repeat(32);
        let text = format!(
            "验收报告 sha256:{} and sha256:{sha}; sha256:abc",
            sha.to_uppercase()
        );
        assert_eq!(cited(&text), vec![sha.clone(), sha]);
        assert!(cited("site log 12").is_empty());
    }

    #[test]
    fn documents_are_told_from_their_first_bytes() {
        assert_eq!(
            media_type("合同.pdf", b"%PDF-1.7 ...").ok(),
            Some("application/pdf")
        );
        assert_eq!(
            media_type("x", b"\x89PNG\r\n\x1a\n....").ok(),
            Some("image/png")
        );
        assert_eq!(
            media_type("meter.JPG", b"\xff\xd8\xff\xe0").ok(),
            Some("image/jpeg")
        );
        assert!(media_type("bill.XLSX", b"PK\x03\x04...").is_ok_and(|m| m.contains("spreadsheet")));
        // A zip that is not an Office file, a renamed executable, a script: refused.
        assert!(media_type("archive.zip", b"PK\x03\x04...").is_err());
        assert!(media_type("contract.pdf", b"MZ\x90\x00").is_err());
        assert!(media_type("report.pdf", b"<script>").is_err());
    }

    #[test]
    fn sha256_known_vectors() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
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
