//! A service's database, chosen by URL scheme.
//!
//! Each service owns its tables. On SQLite that is one file per service; on PostgreSQL one
//! schema per service (set as the connection's `search_path`), so the services can share a server
//! or even a database and still never see each other's tables.
//!
//! Repositories write their SQL once for both engines (numbered `$1` parameters, integer
//! timestamps, TEXT ids) and run it through [`with_db!`](crate::with_db); where PostgreSQL has a
//! better tool (`FOR UPDATE SKIP LOCKED`, `COPY`), the code branches on [`Db`].

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, PgPool, SqlitePool, Transaction};
use tokio_util::sync::CancellationToken;

/// A connection pool to one service's database.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A service's migrations, one set per engine (their types differ; their intent is the same).
pub struct Migrations {
    pub sqlite: &'static Migrator,
    pub postgres: &'static Migrator,
}

/// Runs `$body` with `$pool` bound to the concrete pool type (SQLite or PostgreSQL), so one block
/// of sqlx code serves both engines.
#[macro_export]
macro_rules! with_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite($pool) => $body,
            $crate::db::Db::Postgres($pool) => $body,
        }
    };
}

impl Db {
    /// Connects to `url` and applies the service's migrations. `schema` names the service's own
    /// PostgreSQL schema (ignored on SQLite, where the file is the service's own).
    pub async fn connect(url: &str, schema: &str, migrations: &Migrations) -> anyhow::Result<Db> {
        if !schema.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            bail!("schema name {schema:?} must be lower-case letters and underscores");
        }
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .with_context(|| format!("parsing database URL {url}"))?;
            if !(url.contains(":memory:") || url.contains("mode=memory")) {
                private_sqlite_file(options.get_filename())?;
            }
            let options = options
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options)
                .await
                .with_context(|| format!("opening {url}"))?;
            migrations
                .sqlite
                .run(&pool)
                .await
                .with_context(|| format!("migrating {url}"))?;
            Ok(Db::Sqlite(pool))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let options = PgConnectOptions::from_str(url)
                .with_context(|| format!("parsing database URL {}", redact(url)))?;
            let setup = PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options.clone())
                .await
                .with_context(|| format!("connecting to {}", redact(url)))?;
            // Two replicas starting at once may race to create the schema: the loser's error is
            // harmless when the schema is there afterwards.
            let create = format!("CREATE SCHEMA IF NOT EXISTS {schema}");
            if let Err(e) = sqlx::query(AssertSqlSafe(create)).execute(&setup).await {
                let exists: Option<String> = sqlx::query_scalar(
                    "SELECT schema_name::text FROM information_schema.schemata WHERE schema_name = $1",
                )
                .bind(schema)
                .fetch_optional(&setup)
                .await?;
                if exists.is_none() {
                    return Err(e).context("creating schema");
                }
            }
            setup.close().await;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options.options([("search_path", schema)]))
                .await?;
            migrations
                .postgres
                .run(&pool)
                .await
                .with_context(|| format!("migrating schema {schema}"))?;
            Ok(Db::Postgres(pool))
        } else {
            bail!(
                "unsupported database URL {}: expected sqlite://PATH or postgres://…",
                redact(url)
            )
        }
    }

    /// The engine's name, for logs and the start-up banner.
    pub fn engine(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    pub async fn close(&self) {
        with_db!(self, pool => pool.close().await)
    }
}

/// Creates `dir` and its missing parents for files only the owner may read (0700, whatever the
/// umask). A folder that exists already is left as it is (it may not be ours to change), with a
/// warning when others may enter it; the files in it are made private one by one.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if let Ok(meta) = std::fs::metadata(dir) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(folder = %dir.display(), mode = format!("{:o}", meta.permissions().mode() & 0o777), "the data folder is open to other users; chmod 700 it");
            }
            return Ok(());
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating folder {}", dir.display()))
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating folder {}", dir.display()))
    }
}

/// Makes the SQLite file at `path` readable by the owner only (0600) before SQLite opens it:
/// creates it empty when missing (SQLite takes an empty file as a new database), or tightens an
/// existing one and its `-wal` and `-shm`. SQLite creates `-wal` and `-shm` with the main file's
/// permissions, so they follow.
pub fn private_sqlite_file(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            create_private_dir(parent)?;
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        for suffix in ["", "-wal", "-shm"] {
            let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
            if file.exists() {
                make_private(&file)?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Makes an existing file readable and writable by its owner only (0600).
pub fn make_private(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("making {} private", path.display()))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Begins a transaction meant to write. On SQLite it takes the write lock at once (`BEGIN
/// IMMEDIATE`), so concurrent writers wait on the busy timeout instead of failing when a read
/// transaction tries to upgrade.
pub trait BeginWrite {
    type Database: sqlx::Database;
    fn begin_write(
        &self,
    ) -> impl Future<Output = Result<Transaction<'static, Self::Database>, sqlx::Error>> + Send;
}

impl BeginWrite for SqlitePool {
    type Database = sqlx::Sqlite;
    async fn begin_write(&self) -> Result<Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

impl BeginWrite for PgPool {
    type Database = sqlx::Postgres;
    async fn begin_write(&self) -> Result<Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.begin().await
    }
}

/// Begins a read-only transaction whose reads all see one snapshot, for a result made of
/// several queries that a concurrent commit must not split (a report's counts and their
/// history). On SQLite (WAL) a deferred transaction reads one snapshot from its first read; on
/// PostgreSQL it takes `REPEATABLE READ`.
pub trait BeginSnapshot {
    type Database: sqlx::Database;
    fn begin_snapshot(
        &self,
    ) -> impl Future<Output = Result<Transaction<'static, Self::Database>, sqlx::Error>> + Send;
}

impl BeginSnapshot for SqlitePool {
    type Database = sqlx::Sqlite;
    async fn begin_snapshot(&self) -> Result<Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.begin_with("BEGIN DEFERRED").await
    }
}

impl BeginSnapshot for PgPool {
    type Database = sqlx::Postgres;
    async fn begin_snapshot(&self) -> Result<Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
    }
}

/// What [`follow_notifications`] reports.
#[derive(Debug, PartialEq, Eq)]
pub enum Notice<'a> {
    /// A notification on the channel, with its payload.
    Changed(&'a str),
    /// The listener is (again) listening; what was sent while it was not is gone, so anything
    /// may have changed.
    Listening,
    /// The listener is not listening (it retries every second).
    Lost,
}

/// Follows PostgreSQL's notifications on `channel` (sent by `NOTIFY` or `pg_notify`, delivered
/// at the sender's commit) until `stop`, reporting each to `on`. One pool connection is kept
/// for it while it listens.
pub async fn follow_notifications(
    pool: PgPool,
    channel: &'static str,
    stop: CancellationToken,
    mut on: impl FnMut(Notice<'_>) + Send,
) {
    loop {
        let listen = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(channel).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let listening = tokio::select! {
            _ = stop.cancelled() => return,
            listening = listen => listening,
        };
        match listening {
            Ok(mut listener) => {
                on(Notice::Listening);
                loop {
                    let next = tokio::select! {
                        _ = stop.cancelled() => return,
                        next = listener.try_recv() => next,
                    };
                    match next {
                        Ok(Some(notification)) => on(Notice::Changed(notification.payload())),
                        // The connection dropped and the listener has just listened again on a
                        // new one.
                        Ok(None) => on(Notice::Listening),
                        Err(e) => {
                            tracing::warn!(channel, error = %e, "stopped listening; retrying");
                            on(Notice::Lost);
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(channel, error = %e, "cannot listen; retrying");
                on(Notice::Lost);
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Whether `e` is a unique-constraint violation (a duplicate natural key), on either engine.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// The URL with any password replaced, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/cwsm"),
            "postgres://app:***@db:5432/cwsm"
        );
        assert_eq!(
            redact("postgres://postgres@127.0.0.1/x"),
            "postgres://postgres@127.0.0.1/x"
        );
        assert_eq!(redact("sqlite://cwsm-data/m.db"), "sqlite://cwsm-data/m.db");
    }
}
