//! The embedded mode's data folder is the owner's alone: the folder 0700, the SQLite files (with
//! their `-wal` and `-shm`) and the signing key 0600, whatever the umask; files left readable by
//! an older version are tightened when the app opens them.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cwsm::app::{self, Services};
use cwsm_platform::bus::InProcessBus;
use cwsm_platform::config::Settings;
use tokio_util::sync::CancellationToken;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

/// Asserts the folder and every folder in it (evidence documents) are 0700 and every file 0600;
/// returns the names in it.
fn assert_private(dir: &Path) -> Vec<String> {
    assert_eq!(mode(dir), 0o700, "data folder {}", dir.display());
    let mut names = Vec::new();
    for file in files(dir) {
        if file.is_dir() {
            assert_private(&file);
        } else {
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
        names.push(
            file.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
    }
    names.sort();
    names
}

async fn start(dir: &Path) -> anyhow::Result<app::Running> {
    let settings = Settings {
        listen: "127.0.0.1:0".to_string(),
        data_dir: dir.to_path_buf(),
        outbox_poll_ms: 100,
        ..Settings::default()
    };
    // As `cwsm serve` does: the key first (the key file in the data folder), then the services.
    let keys = app::keys_for(&settings)?;
    app::start(
        &settings,
        Services::ALL,
        Arc::new(InProcessBus::new()),
        keys,
        CancellationToken::new(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_folder_and_its_files_are_private_on_sqlite() -> anyhow::Result<()> {
    let dir = std::env::temp_dir()
        .join(format!("cwsm-perm-{}", cwsm_platform::new_id()))
        .join("data");
    let running = start(&dir).await?;
    let names = assert_private(&dir);
    for expected in [
        cwsm_platform::auth::KEY_FILE,
        "matching.db",
        "matching.db-wal",
        "matching.db-shm",
        "projects.db",
        "reporting.db",
        "documents",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not in {names:?}"
        );
    }
    running.stop().await?;
    assert_private(&dir);

    // Files an older version left open to others are made private when the app opens them.
    for file in files(&dir).into_iter().filter(|f| f.is_file()) {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))?;
    }
    let running = start(&dir).await?;
    for file in files(&dir).into_iter().filter(|f| f.is_file()) {
        assert_eq!(mode(&file), 0o600, "{} after a restart", file.display());
    }
    running.stop().await?;
    if let Some(parent) = dir.parent() {
        let _ = std::fs::remove_dir_all(parent);
    }
    Ok(())
}
