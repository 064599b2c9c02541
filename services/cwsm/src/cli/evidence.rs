//! What `cwsm projects evidence` and `cwsm report evidence` share: a file read into the chunks
//! of an upload, a download saved, and the documents as rows.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::Output;

/// The messages uploading `file` to `owner` (a project or a plan), each made by `message` of
/// (owner, file name, chunk): the first names the owner and the file, every one carries a
/// chunk of 1 MiB (an empty file: one empty chunk, so the server says the file is empty).
pub(crate) fn upload_messages<M>(
    file: &Path,
    owner: &str,
    message: impl Fn(String, String, Vec<u8>) -> M,
) -> anyhow::Result<Vec<M>> {
    let content = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut chunks: Vec<Vec<u8>> = content.chunks(1024 * 1024).map(<[u8]>::to_vec).collect();
    if chunks.is_empty() {
        chunks.push(Vec::new());
    }
    Ok(chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| {
            let first = i == 0;
            message(
                if first {
                    owner.to_string()
                } else {
                    String::new()
                },
                if first { name.clone() } else { String::new() },
                chunk,
            )
        })
        .collect())
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
