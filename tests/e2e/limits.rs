//! The server's bounds against a hostile or careless client, measured on loopback: streams per
//! connection (a raw HTTP/2 client that ignores the server's SETTINGS), the per-call deadline,
//! idle connections, the connection limit, streams per caller; and TLS on the gRPC port.

use std::sync::Arc;
use std::time::Duration;

use cwsm::app::{self, Running, Services};
use cwsm_platform::auth::{Keys, Role};
use cwsm_platform::bus::InProcessBus;
use cwsm_platform::config::Settings;
use cwsm_proto::reporting::v1 as r;
use cwsm_proto::reporting::v1::reporting_service_client::ReportingServiceClient;
use cwsm_tests::{bearer, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;

/// Upper bound on waiting for an event the test expects (never a measured duration).
const WAIT: Duration = Duration::from_secs(30);

struct Server {
    running: Option<Running>,
    keys: Arc<Keys>,
    data_dir: std::path::PathBuf,
}

impl Server {
    /// All services on SQLite with the in-process bus, with `tune` applied to the settings.
    async fn start(tune: impl FnOnce(&mut Settings)) -> anyhow::Result<Server> {
        let data_dir =
            std::env::temp_dir().join(format!("cwsm-limits-{}", cwsm_platform::new_id()));
        let mut settings = Settings {
            listen: "127.0.0.1:0".to_string(),
            data_dir: data_dir.clone(),
            outbox_poll_ms: 100,
            ..Settings::default()
        };
        tune(&mut settings);
        let keys = Arc::new(Keys::from_secret(&[42u8; 32])?);
        let running = app::start(
            &settings,
            Services::ALL,
            Arc::new(InProcessBus::new()),
            keys.clone(),
            CancellationToken::new(),
        )
        .await?;
        Ok(Server {
            running: Some(running),
            keys,
            data_dir,
        })
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.running
            .as_ref()
            .map(|r| r.addr)
            .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    fn token(&self, subject: &str, role: Role) -> String {
        self.keys
            .issue(subject, role, None, Duration::from_secs(600))
            .unwrap_or_default()
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(r) = self.running.take() {
            r.stop().await?;
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
        Ok(())
    }
}

/// The resident memory of this process (the server runs in it), in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

// ---- a raw HTTP/2 client: frames written by hand, so nothing on the client side obeys limits.

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const REFUSED_STREAM: u32 = 0x7;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK: a literal header (not indexed), its name by static-table index or spelled out.
fn hpack_literal(block: &mut Vec<u8>, name_index: u8, name: &str, value: &str) {
    if name_index == 0 {
        block.push(0x00);
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
    } else if name_index < 15 {
        block.push(name_index);
    } else {
        block.push(0x0f);
        block.push(name_index - 15);
    }
    block.push(value.len() as u8);
    block.extend_from_slice(value.as_bytes());
}

/// The header block of a gRPC health check (POST, its path, application/grpc, te: trailers).
fn health_check_headers(authority: &str) -> Vec<u8> {
    let mut block = vec![0x83, 0x86]; // :method POST, :scheme http (static table)
    hpack_literal(&mut block, 4, ":path", "/grpc.health.v1.Health/Check");
    hpack_literal(&mut block, 1, ":authority", authority);
    hpack_literal(&mut block, 31, "content-type", "application/grpc");
    hpack_literal(&mut block, 0, "te", "trailers");
    block
}

/// What the server sent back, counted.
#[derive(Debug, Default)]
struct Seen {
    max_concurrent_streams: Option<u32>,
    refused: u64,
    other_resets: u64,
    goaway: bool,
    ping_acks: u64,
}

async fn read_frame(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
) -> std::io::Result<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    stream.read_exact(&mut head).await?;
    let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
    let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await?;
    Ok((head[3], head[4], id, payload))
}

/// Reads frames until the `pings`-th PING ack (or the end of the connection), acking SETTINGS.
async fn read_until_ping_acks(
    reader: &mut (impl tokio::io::AsyncRead + Unpin),
    acks: &tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
    seen: &mut Seen,
    pings: u64,
) {
    while seen.ping_acks < pings {
        let Ok((kind, flags, _, payload)) = read_frame(reader).await else {
            return;
        };
        match kind {
            SETTINGS if flags & 0x1 == 0 => {
                for s in payload.chunks_exact(6) {
                    if u16::from_be_bytes([s[0], s[1]]) == SETTINGS_MAX_CONCURRENT_STREAMS {
                        seen.max_concurrent_streams =
                            Some(u32::from_be_bytes([s[2], s[3], s[4], s[5]]));
                    }
                }
                let _ = acks.send(frame(SETTINGS, 0x1, 0, &[]));
            }
            RST_STREAM if payload.len() == 4 => {
                if u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                    == REFUSED_STREAM
                {
                    seen.refused += 1;
                } else {
                    seen.other_resets += 1;
                }
            }
            PING if flags & 0x1 != 0 => seen.ping_acks += 1,
            GOAWAY => {
                seen.goaway = true;
                return;
            }
            _ => {}
        }
    }
}

/// One connection opens `streams` health checks with headers and no body (never ending them),
/// ignoring the server's stream limit: the server refuses all but `max_concurrent_streams`
/// of them (REFUSED_STREAM), and its memory grows by what it holds, not by what is sent.
/// Before the limit it held every one (the issue measured +183 MB for 50,000).
#[tokio::test]
async fn one_connection_cannot_hold_more_streams_than_the_limit() -> anyhow::Result<()> {
    const LIMIT: u32 = 100;
    const STREAMS: u32 = 50_000;
    let server = Server::start(|s| s.max_concurrent_streams = LIMIT).await?;
    let addr = server.addr();
    let result = async {
        let stream = TcpStream::connect(addr).await?;
        let (mut reader, mut writer) = stream.into_split();
        // The writer half: whatever the test or the reader queues.
        let (out, mut queued) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
        let writing = tokio::spawn(async move {
            while let Some(bytes) = queued.recv().await {
                if writer.write_all(&bytes).await.is_err() {
                    return;
                }
            }
        });
        out.send(PREFACE.to_vec())?;
        out.send(frame(SETTINGS, 0, 0, &[]))?;
        let mut seen = Seen::default();
        // A first PING: the server's SETTINGS have arrived when its ack does.
        out.send(frame(PING, 0, 0, &[0; 8]))?;
        read_until_ping_acks(&mut reader, &out, &mut seen, 1).await;
        let before = rss_kib();
        let block = health_check_headers(&addr.to_string());
        let mut batch = Vec::new();
        for i in 0..STREAMS {
            batch.extend(frame(HEADERS, 0x4, 2 * i + 1, &block));
            if batch.len() > 64 * 1024 {
                out.send(std::mem::take(&mut batch))?;
            }
        }
        out.send(batch)?;
        // The server answers PINGs in order: after these acks it has read every HEADERS.
        out.send(frame(PING, 0, 0, &[1; 8]))?;
        out.send(frame(PING, 0, 0, &[2; 8]))?;
        read_until_ping_acks(&mut reader, &out, &mut seen, 3).await;
        // Let the accepted calls' tasks run, then measure.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let grown_kib = rss_kib().saturating_sub(before);
        eprintln!(
            "{STREAMS} streams sent on one connection: {} refused, {} held; RSS +{} KiB; {seen:?}",
            seen.refused,
            u64::from(STREAMS) - seen.refused,
            grown_kib
        );
        assert_eq!(
            seen.max_concurrent_streams,
            Some(LIMIT),
            "the server announces its stream limit"
        );
        assert!(
            u64::from(STREAMS) - seen.refused <= u64::from(LIMIT),
            "at most {LIMIT} streams held, {} refused of {STREAMS}",
            seen.refused
        );
        assert!(
            grown_kib < 48 * 1024,
            "the server's memory stays bounded: +{grown_kib} KiB"
        );
        writing.abort();
        Ok::<_, anyhow::Error>(())
    }
    .await;
    server.stop().await?;
    result
}

/// Whether the server closes `conn` (EOF or reset) before `WAIT`; sends nothing itself.
async fn closed_by_server(conn: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    let waited = tokio::time::timeout(WAIT, async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                // SETTINGS or a GOAWAY: read on to the end.
                Ok(_) => {}
            }
        }
    })
    .await;
    waited.is_ok()
}

/// How many of `conns` the server closes, waiting for all at once (at most `WAIT`).
async fn count_closed(conns: Vec<TcpStream>) -> usize {
    let mut waiting = tokio::task::JoinSet::new();
    for mut c in conns {
        waiting.spawn(async move { closed_by_server(&mut c).await });
    }
    waiting.join_all().await.into_iter().filter(|c| *c).count()
}

/// Idle connections are closed once no call has been open on them for `idle_timeout_secs`:
/// plain TCP connections that never speak, and a gRPC client's connection after its call.
/// Before, 2,000 idle connections were held for ever.
#[tokio::test]
async fn idle_connections_are_closed() -> anyhow::Result<()> {
    const IDLE: usize = 200;
    let server = Server::start(|s| s.idle_timeout_secs = 1).await?;
    let addr = server.addr();
    let result = async {
        let mut conns = Vec::new();
        for _ in 0..IDLE {
            conns.push(TcpStream::connect(addr).await?);
        }
        let closed = count_closed(conns).await;
        eprintln!("{closed} of {IDLE} idle connections closed by the server");
        assert_eq!(closed, IDLE, "every idle connection is closed");
        // A connection that made a call is closed once idle too (and a client reconnects).
        let mut raw = TcpStream::connect(addr).await?;
        raw.write_all(PREFACE).await?;
        raw.write_all(&frame(SETTINGS, 0, 0, &[])).await?;
        assert!(
            closed_by_server(&mut raw).await,
            "an idle HTTP/2 connection is closed"
        );
        Ok::<_, anyhow::Error>(())
    }
    .await;
    server.stop().await?;
    result
}

/// Connections beyond `max_connections` are closed at once; when one of those held closes,
/// a new one is served.
#[tokio::test]
async fn connections_beyond_the_limit_are_closed() -> anyhow::Result<()> {
    const MAX: usize = 20;
    let server = Server::start(|s| s.max_connections = MAX).await?;
    let addr = server.addr();
    let result = async {
        let mut held = Vec::new();
        for _ in 0..MAX {
            held.push(TcpStream::connect(addr).await?);
        }
        let mut extra = Vec::new();
        for _ in 0..10 {
            extra.push(TcpStream::connect(addr).await?);
        }
        let refused = count_closed(extra).await;
        eprintln!("{MAX} connections held; {refused} of 10 more closed by the server");
        assert_eq!(refused, 10, "connections beyond the limit are closed");
        // The held ones are still served: one makes a health check.
        drop(held.pop());
        let healthy = eventually(WAIT, || async {
            let channel = Channel::from_shared(format!("http://{addr}"))
                .ok()?
                .connect()
                .await
                .ok()?;
            tonic_health::pb::health_client::HealthClient::new(channel)
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .ok()
        })
        .await;
        assert!(healthy.is_some(), "a freed place serves a new connection");
        Ok::<_, anyhow::Error>(())
    }
    .await;
    server.stop().await?;
    result
}

/// A unary call whose body never comes answers DEADLINE_EXCEEDED after
/// `request_timeout_secs`, and its stream is freed (so a connection cannot keep
/// `max_concurrent_streams` calls open for ever).
#[tokio::test]
async fn a_call_without_its_body_ends_at_the_deadline() -> anyhow::Result<()> {
    let server = Server::start(|s| s.request_timeout_secs = 1).await?;
    let addr = server.addr();
    let result = async {
        let tcp = TcpStream::connect(addr).await?;
        let (mut client, connection) = h2::client::handshake(tcp).await?;
        tokio::spawn(connection);
        let request = tonic::codegen::http::Request::builder()
            .method("POST")
            .uri(format!("http://{addr}/grpc.health.v1.Health/Check"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())?;
        // Headers only; the body stays open and empty.
        let (response, _body) = client.send_request(request, false)?;
        let response = tokio::time::timeout(WAIT, response).await??;
        let status = response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        assert_eq!(
            status.as_deref(),
            Some((Code::DeadlineExceeded as i32).to_string().as_str()),
            "DEADLINE_EXCEEDED: {:?}",
            response.headers().get("grpc-message")
        );
        Ok::<_, anyhow::Error>(())
    }
    .await;
    server.stop().await?;
    result
}

/// One caller holds at most `streams_per_caller` WatchReport streams and as many
/// IngestReadings streams; one more answers RESOURCE_EXHAUSTED naming the limit; other callers
/// are not affected; a closed stream frees its place.
#[tokio::test]
async fn streams_per_caller_are_limited() -> anyhow::Result<()> {
    use cwsm_proto::projects::v1 as p;
    use cwsm_proto::projects::v1::projects_service_client::ProjectsServiceClient;
    const PER_CALLER: usize = 3;
    let server = Server::start(|s| s.streams_per_caller = PER_CALLER).await?;
    let addr = server.addr();
    let result = async {
        let channel = Channel::from_shared(format!("http://{addr}"))?
            .connect()
            .await?;
        let watcher = server.token("watcher", Role::Admin);
        let reporting =
            |token: &str| ReportingServiceClient::with_interceptor(channel.clone(), bearer(token));
        let watch = || r::WatchReportRequest {
            plan_code: "xinbei-2020".into(),
            ..Default::default()
        };
        let mut open = Vec::new();
        for _ in 0..PER_CALLER {
            let mut stream = reporting(&watcher)
                .watch_report(watch())
                .await?
                .into_inner();
            // The first report: the server holds the stream (and its place) now.
            stream.message().await?;
            open.push(stream);
        }
        let refused = reporting(&watcher)
            .watch_report(watch())
            .await
            .err()
            .ok_or_else(|| anyhow::anyhow!("a stream beyond the limit was accepted"))?;
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
        assert!(
            refused.message().contains("at most 3 WatchReport"),
            "{refused:?}"
        );
        let other = server.token("someone-else", Role::Admin);
        let mut others = reporting(&other).watch_report(watch()).await?.into_inner();
        others.message().await?;
        drop(open.pop());
        let again = eventually(WAIT, || async {
            reporting(&watcher).watch_report(watch()).await.ok()
        })
        .await;
        assert!(again.is_some(), "a closed stream frees its place");

        // IngestReadings: streams kept open by a sender that sends nothing.
        let projects =
            |token: &str| ProjectsServiceClient::with_interceptor(channel.clone(), bearer(token));
        let ingester = server.token("ingester", Role::Admin);
        let mut senders = Vec::new();
        let mut calls = Vec::new();
        for _ in 0..PER_CALLER {
            let (tx, rx) = tokio::sync::mpsc::channel::<p::IngestReadingsRequest>(1);
            senders.push(tx);
            let mut client = projects(&ingester);
            calls.push(tokio::spawn(async move {
                client
                    .ingest_readings(tokio_stream::wrappers::ReceiverStream::new(rx))
                    .await
            }));
        }
        // A stream that ends at once is refused once the others hold their places.
        let refused = eventually(WAIT, || async {
            match projects(&ingester)
                .ingest_readings(tokio_stream::iter(Vec::<p::IngestReadingsRequest>::new()))
                .await
            {
                Err(s) if s.code() == Code::ResourceExhausted => Some(s),
                _ => None,
            }
        })
        .await;
        let refused = refused.ok_or_else(|| anyhow::anyhow!("no stream was refused"))?;
        assert!(
            refused.message().contains("at most 3 IngestReadings"),
            "{refused:?}"
        );
        let fine = projects(&other)
            .ingest_readings(tokio_stream::iter(Vec::<p::IngestReadingsRequest>::new()))
            .await;
        assert!(fine.is_ok(), "another caller is served: {fine:?}");
        senders.clear();
        for call in calls {
            call.await??;
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    server.stop().await?;
    result
}

/// A CA and a server and a client certificate it signed (openssl), in a fresh folder.
struct Certs {
    dir: std::path::PathBuf,
}

impl Certs {
    fn make() -> anyhow::Result<Certs> {
        use std::process::{Command, Stdio};
        let dir = std::env::temp_dir().join(format!("cwsm-grpc-tls-{}", cwsm_platform::new_id()));
        std::fs::create_dir_all(&dir)?;
        let run = |args: &[&str]| -> anyhow::Result<()> {
            let ok = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?
                .success();
            anyhow::ensure!(ok, "openssl {args:?} failed");
            Ok(())
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=cwsm test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ])?;
        std::fs::write(
            dir.join("server.ext"),
            // serverAuth and clientAuth: a service presents its own certificate when it calls
            // another under mutual TLS.
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n",
        )?;
        std::fs::write(
            dir.join("client.ext"),
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        )?;
        for who in ["server", "client"] {
            run(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={who}"),
                "-keyout",
                &format!("{who}.key"),
                "-out",
                &format!("{who}.csr"),
            ])?;
            run(&[
                "x509",
                "-req",
                "-in",
                &format!("{who}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-out",
                &format!("{who}.pem"),
                "-extfile",
                &format!("{who}.ext"),
            ])?;
        }
        Ok(Certs { dir })
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A health check over `url` with `tls`: whether it succeeded.
async fn health_over(url: &str, tls: &cwsm_platform::server::ClientTls) -> anyhow::Result<()> {
    let channel = cwsm_platform::server::client_endpoint(url, tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await?;
    tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await?;
    Ok(())
}

/// RebuildCounts over `url` with `tls`: reporting calls the projects service (itself, here)
/// the way the settings say, so it fails unless that call speaks TLS too.
async fn rebuild_over(
    server: &Server,
    url: &str,
    tls: &cwsm_platform::server::ClientTls,
) -> anyhow::Result<()> {
    let channel = cwsm_platform::server::client_endpoint(url, tls)?
        .connect()
        .await?;
    let admin = server
        .keys
        .issue("admin", Role::Admin, None, Duration::from_secs(600))?;
    ReportingServiceClient::with_interceptor(channel, bearer(&admin))
        .rebuild_counts(r::RebuildCountsRequest {
            request_id: format!("rebuild-{}", cwsm_platform::new_id()),
            plan_code: "xinbei-2020".into(),
        })
        .await?;
    Ok(())
}

/// With `tls_cert` and `tls_key` the gRPC port speaks TLS: an https client trusting the CA is
/// served, a plaintext one is not. With `tls_client_ca` too, a client without a certificate
/// signed by that CA is refused, one with it served. Reporting's own call to projects
/// (RebuildCounts) speaks TLS, and mutual TLS, too (it used to dial plaintext and fail).
#[tokio::test]
async fn the_grpc_port_speaks_tls_and_mutual_tls() -> anyhow::Result<()> {
    use cwsm_platform::server::ClientTls;
    let certs = Certs::make()?;
    let server = Server::start(|s| {
        s.tls_cert = Some(certs.path("server.pem"));
        s.tls_key = Some(certs.path("server.key"));
        s.tls_ca = Some(certs.path("ca.pem"));
    })
    .await?;
    let port = server.addr().port();
    let with_ca = ClientTls {
        ca: Some(certs.path("ca.pem")),
        ..ClientTls::default()
    };
    let result = async {
        health_over(&format!("https://127.0.0.1:{port}"), &with_ca).await?;
        let plain = health_over(&format!("http://127.0.0.1:{port}"), &ClientTls::default()).await;
        assert!(plain.is_err(), "a plaintext client is not served");
        let untrusted =
            health_over(&format!("https://127.0.0.1:{port}"), &ClientTls::default()).await;
        assert!(untrusted.is_err(), "the certificate is checked");
        rebuild_over(&server, &format!("https://127.0.0.1:{port}"), &with_ca).await?;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    server.stop().await?;
    result?;

    let server = Server::start(|s| {
        s.tls_cert = Some(certs.path("server.pem"));
        s.tls_key = Some(certs.path("server.key"));
        s.tls_client_ca = Some(certs.path("ca.pem"));
        s.tls_ca = Some(certs.path("ca.pem"));
    })
    .await?;
    let url = format!("https://127.0.0.1:{}", server.addr().port());
    let result = async {
        let without = health_over(&url, &with_ca).await;
        assert!(
            without.is_err(),
            "a client without a certificate is refused"
        );
        let with_cert = ClientTls {
            ca: Some(certs.path("ca.pem")),
            cert: Some(certs.path("client.pem")),
            key: Some(certs.path("client.key")),
        };
        health_over(&url, &with_cert).await?;
        rebuild_over(&server, &url, &with_cert).await?;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    server.stop().await?;
    result
}
