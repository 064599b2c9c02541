//! TLS to PostgreSQL and Redis, as managed servers ask for: the binary carries a TLS client
//! (rustls) for both, chosen by the URL (`sslmode=require`, `rediss://`).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cwsm::app::Services;
use cwsm_platform::auth::Role;
use cwsm_platform::bus::{Envelope, EventBus, RedisBus};
use cwsm_platform::db::Db;
use cwsm_proto::matching::v1 as m;
use cwsm_proto::matching::v1::matching_service_client::MatchingServiceClient;
use cwsm_proto::types;
use cwsm_tests::{Backend, TestApp, bearer, fresh_credit_code, postgres_and_redis_available};

/// Matching on `sslmode=require`: its connections are encrypted (PostgreSQL says so in
/// `pg_stat_ssl`) and it works as ever.
#[tokio::test]
async fn a_service_talks_to_postgresql_over_tls() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    let app = TestApp::start(Backend::Postgres).await?;
    let result = async {
        let (replica, channel) = app
            .replica_with(Services::only("matching")?, "sslmode=require")
            .await?;
        let checked = async {
            let Some((_, Db::Postgres(pool))) = replica.databases.first() else {
                anyhow::bail!("expected matching's PostgreSQL pool");
            };
            let encrypted: bool =
                sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                    .fetch_one(pool)
                    .await?;
            assert!(encrypted, "the connection is encrypted");
            let code = fresh_credit_code("91320411MA");
            let token = app.token(Role::Company, Some(&code));
            let mut client = MatchingServiceClient::with_interceptor(channel, bearer(&token));
            let company = client
                .create_company(m::CreateCompanyRequest {
                    request_id: cwsm_platform::new_id(),
                    company: Some(m::Company {
                        credit_code: code.clone(),
                        name: "常州清源节水科技有限公司".into(),
                        sectors: vec![types::Sector::School as i32],
                        certification_grade: types::CertificationGrade::Aaa as i32,
                        ..Default::default()
                    }),
                })
                .await?
                .into_inner()
                .company
                .ok_or_else(|| anyhow::anyhow!("no company in the reply"))?;
            let read = client
                .get_company(m::GetCompanyRequest {
                    company_id: company.id.clone(),
                    ..Default::default()
                })
                .await?
                .into_inner()
                .company
                .ok_or_else(|| anyhow::anyhow!("no company in the reply"))?;
            assert_eq!(read.credit_code, code);
            Ok(())
        }
        .await;
        replica.stop().await?;
        checked
    }
    .await;
    app.stop().await?;
    result
}

/// A `redis-server` serving only TLS, with a self-signed certificate; killed on drop.
struct TlsRedis {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl TlsRedis {
    async fn start() -> anyhow::Result<TlsRedis> {
        let dir = std::env::temp_dir().join(format!("cwsm-redis-tls-{}", cwsm_platform::new_id()));
        std::fs::create_dir_all(&dir)?;
        let made = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args([
                "-subj",
                "/CN=localhost",
                "-keyout",
                "key.pem",
                "-out",
                "cert.pem",
            ])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        anyhow::ensure!(made.success(), "openssl could not make a certificate");
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new("/usr/bin/redis-server")
            .args(["--port", "0", "--bind", "127.0.0.1", "--save", ""])
            .args(["--tls-port", &port.to_string()])
            .args(["--tls-cert-file", "cert.pem", "--tls-key-file", "key.pem"])
            .args(["--tls-auth-clients", "no"])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let redis = TlsRedis { child, port, dir };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(redis);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("redis-server did not listen on its TLS port")
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The bus over `rediss://`: an event published is delivered to the group's consumer.
#[tokio::test]
async fn the_bus_carries_events_over_tls() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    let redis = TlsRedis::start().await?;
    // Self-signed here, so no certificate check; with a managed Redis the URL is plain
    // `rediss://host:port` and the system's trust roots check it.
    let url = format!("rediss://127.0.0.1:{}/#insecure", redis.port);
    let bus = RedisBus::connect_with_prefix(&url, "cwsm-test").await?;
    let event = Envelope {
        event_id: cwsm_platform::new_id(),
        topic: "test.topic".into(),
        kind: "test.Kind".into(),
        payload: vec![7, 0, 255],
        occurred_at_ms: 1,
        trace_parent: String::new(),
    };
    bus.publish(&event).await?;
    let mut sub = bus.subscribe("test.topic", "group-a", "consumer-1").await?;
    let got = tokio::time::timeout(Duration::from_secs(10), sub.next()).await??;
    assert_eq!(got.envelope, event);
    sub.ack(&got).await?;
    // The plain protocol is refused: the server speaks only TLS.
    let plain_url = format!("redis://127.0.0.1:{}", redis.port);
    let plain = tokio::time::timeout(
        Duration::from_secs(2),
        RedisBus::connect_with_prefix(&plain_url, "x"),
    )
    .await;
    assert!(
        !matches!(plain, Ok(Ok(_))),
        "a plain connection to the TLS port works"
    );
    Ok(())
}
