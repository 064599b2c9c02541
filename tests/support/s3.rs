//! A real S3-compatible server for the tests: `s3s-fs` (the s3s project's S3 server over a
//! folder, SigV4-authenticated; `cargo install s3s-fs --features binary`, as `.ci/run` does) on a
//! free loopback port, with its own access key and a bucket for evidence documents.
//!
//! Skipped (with a message) when `s3s-fs` is not installed, unless `CWSM_REQUIRE_S3=1` (as
//! `.ci/run` sets): then it fails.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cwsm_platform::config::Settings;

use crate::eventually;
use crate::web::which;

pub const BUCKET: &str = "cwsm-evidence";
const ACCESS_KEY: &str = "cwsm-test-access";
const SECRET_KEY: &str = "cwsm-test-secret-key";

/// The server process (killed when dropped) and the folder it keeps objects in.
pub struct ObjectStorage {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    root: tempfile::TempDir,
}

fn required() -> bool {
    std::env::var("CWSM_REQUIRE_S3").as_deref() == Ok("1")
}

fn program() -> Option<PathBuf> {
    which("s3s-fs").or_else(|| {
        let home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
        Some(home.join("bin").join("s3s-fs")).filter(|p| p.is_file())
    })
}

impl ObjectStorage {
    /// Starts the server and waits until it accepts connections; `None` when it is not
    /// installed here and not required.
    pub async fn start() -> anyhow::Result<Option<ObjectStorage>> {
        let Some(program) = program() else {
            let why = "s3s-fs is not installed: cargo install s3s-fs --version 0.14.1 --features binary --locked";
            if required() {
                anyhow::bail!("the S3 server is required (CWSM_REQUIRE_S3=1): {why}");
            }
            eprintln!("skipped the S3 server: {why} (CWSM_REQUIRE_S3=1 fails instead)");
            return Ok(None);
        };
        let root = tempfile::tempdir()?;
        // A bucket of s3s-fs is a folder of its root.
        std::fs::create_dir_all(root.path().join(BUCKET))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(program)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let server = ObjectStorage {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            root,
        };
        let addr = format!("127.0.0.1:{port}");
        let up = eventually(Duration::from_secs(20), || {
            let addr = addr.clone();
            async move { tokio::net::TcpStream::connect(addr).await.ok().map(|_| ()) }
        })
        .await;
        if up.is_none() {
            anyhow::bail!("s3s-fs never listened on {}", server.endpoint);
        }
        Ok(Some(server))
    }

    /// Points `settings`' document store at this server's bucket, under `prefix`.
    pub fn configure(&self, settings: &mut Settings, prefix: &str) {
        settings.documents_url = Some(format!("s3://{BUCKET}/{prefix}"));
        settings.documents_options = [
            ("aws_endpoint", self.endpoint.as_str()),
            ("aws_allow_http", "true"),
            ("aws_region", "cn-east-1"),
            ("aws_access_key_id", ACCESS_KEY),
            ("aws_secret_access_key", SECRET_KEY),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    }

    /// Where the server keeps object `key` of the bucket.
    pub fn object_file(&self, key: &str) -> PathBuf {
        self.root.path().join(BUCKET).join(key)
    }
}

impl Drop for ObjectStorage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
