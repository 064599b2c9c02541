//! What `cwsm projects evidence` and `cwsm report evidence` share: a file read into the chunks
//! of an upload, a download saved, and the documents as rows.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::Output;

/// The file's name and its content in chunks of 1 MiB (the upload's messages).
pub(crate) fn upload_parts(file: &Path) -> anyhow::Result<(String, Vec<Vec<u8>>)> {
    let content = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut chunks: Vec<Vec<u8>> = content.chunks(1024 * 1024).map(<[u8]>::to_vec).collect();
    if chunks.is_empty() {
        // One empty message, so the server names the file empty rather than the stream.
        chunks.push(Vec::new());
    }
    Ok((name, chunks))
}

/// A download's record (carried by its first message) and bytes, each message split by `parts`.
pub(crate) async fn collect_download<M, R: Default>(
    mut stream: tonic::Streaming<M>,
    parts: impl Fn(M) -> (Option<R>, Vec<u8>),
) -> anyhow::Result<(R, Vec<u8>)> {
    let (mut record, mut bytes) = (None, Vec::new());
    while let Some(m) = stream.message().await? {
        let (r, chunk) = parts(m);
        if r.is_some() {
            record = r;
        }
        bytes.extend(chunk);
    }
    Ok((record.unwrap_or_default(), bytes))
}

/// Writes a downloaded document to `out`, or to the stored file name's last part in this
/// folder (the name is another party's text), and says where.
pub(crate) fn save_download(
    out: Option<PathBuf>,
    file_name: &str,
    sha256: &str,
    bytes: &[u8],
) -> anyhow::Result<()> {
    let path = out.unwrap_or_else(|| {
        Path::new(file_name)
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(format!("{sha256}.bin")))
    });
    std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    println!(
        "{sha256} ({} bytes) written to {}",
        bytes.len(),
        path.display()
    );
    Ok(())
}

/// Documents as rows: (sha256, file, type, bytes, uploaded by).
pub(crate) fn document_rows(list: impl IntoIterator<Item = [String; 5]>) -> Output {
    Output {
        headers: vec!["sha256", "file", "type", "bytes", "uploaded by"],
        rows: list.into_iter().map(Vec::from).collect(),
    }
}
