//! The gRPC server every mode uses: the services given, plus `grpc.health.v1` (a status per
//! service) and server reflection v1 and v1alpha (grpcurl 1.8 speaks only v1alpha). Health and
//! reflection need no token.
//!
//! Bounded whatever clients do ([`Limits`], from the settings): connections (a permit each),
//! idle connections closed, HTTP/2 streams per connection, a deadline per call (longer for
//! streams), keep-alive PINGs and TCP keep-alive to find dead peers, header size, pending
//! resets; streams per caller for the long calls ([`CallerStreams`]).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::codegen::http;
use tonic::service::Routes;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::auth::Principal;
use crate::config::Settings;
use crate::{Error, Result};

/// Binds `listen` ("host:port"); port 0 picks a free one.
pub async fn bind(listen: &str) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Health and reflection, ready to be joined by the services. `descriptors` are the encoded
/// file descriptor sets of the services served (reflection describes them to clients without
/// the `.proto` files).
pub fn base_routes(descriptors: &[&'static [u8]]) -> anyhow::Result<(Routes, HealthReporter)> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let mut v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    let mut v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    for set in descriptors {
        v1 = v1.register_encoded_file_descriptor_set(set);
        v1alpha = v1alpha.register_encoded_file_descriptor_set(set);
    }
    let v1 = v1.build_v1()?;
    let v1alpha = v1alpha.build_v1alpha()?;
    let routes = Routes::new(health).add_service(v1).add_service(v1alpha);
    Ok((routes, reporter))
}

/// Marks `service` (its full gRPC name) SERVING, and the server as a whole ("").
pub async fn set_serving(reporter: &HealthReporter, service: &str) {
    reporter
        .set_service_status(service, ServingStatus::Serving)
        .await;
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
}

/// How the server bounds what clients may hold: connections, streams, time. Built from the
/// settings (see [`crate::config`] for the keys and defaults).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Open connections; one beyond is accepted and closed at once.
    pub max_connections: usize,
    /// A connection with no call open this long is closed.
    pub idle_timeout: Duration,
    /// HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: streams beyond are refused (REFUSED_STREAM).
    pub max_concurrent_streams: u32,
    /// A unary call, from its headers to its answer (request body included).
    pub request_timeout: Duration,
    /// The same for the long calls in [`Limits::long_calls`].
    pub stream_timeout: Duration,
    /// Paths (`/package.Service/Method`) of the streaming calls, which get `stream_timeout`.
    pub long_calls: Vec<String>,
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    pub tcp_keepalive: Duration,
    pub max_header_list_bytes: u32,
    pub max_pending_reset_streams: usize,
    /// The certificate and key (PEM) of the gRPC port: TLS when set.
    pub tls: Option<TlsFiles>,
}

/// PEM files of the server's TLS; `client_ca` asks every client for a certificate it signed.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

impl Limits {
    pub fn from_settings(s: &Settings) -> anyhow::Result<Limits> {
        let secs = |n: u64| Duration::from_secs(n.max(1));
        let tls = match (&s.tls_cert, &s.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: s.tls_client_ca.clone(),
            }),
            (None, None) if s.tls_client_ca.is_some() => {
                anyhow::bail!("tls_client_ca needs tls_cert and tls_key")
            }
            (None, None) => None,
            _ => anyhow::bail!("tls_cert and tls_key go together"),
        };
        Ok(Limits {
            max_connections: s.max_connections.max(1),
            idle_timeout: secs(s.idle_timeout_secs),
            max_concurrent_streams: s.max_concurrent_streams.max(1),
            request_timeout: secs(s.request_timeout_secs),
            stream_timeout: secs(s.stream_timeout_secs),
            long_calls: Vec::new(),
            keepalive_interval: secs(s.keepalive_interval_secs),
            keepalive_timeout: secs(s.keepalive_timeout_secs),
            tcp_keepalive: secs(s.tcp_keepalive_secs),
            max_header_list_bytes: s.max_header_list_bytes.max(1024),
            max_pending_reset_streams: s.max_pending_reset_streams,
            tls,
        })
    }
}

impl Default for Limits {
    fn default() -> Self {
        // The settings' defaults are the one place the numbers are written.
        Limits::from_settings(&Settings::default()).unwrap_or_else(|_| unreachable!())
    }
}

/// Serves `routes` on `listener` within `limits` until `shutdown`, then lets in-flight calls
/// finish. HTTP/1.1 is accepted beside HTTP/2, so plain web routes merged into `routes` answer
/// browsers.
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    limits: Limits,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut builder = tonic::transport::Server::builder()
        .accept_http1(true)
        .max_concurrent_streams(limits.max_concurrent_streams)
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .http2_max_pending_accept_reset_streams(Some(limits.max_pending_reset_streams))
        .http2_max_header_list_size(limits.max_header_list_bytes);
    if let Some(tls) = &limits.tls {
        // A handshake that stalls holds a connection permit: bound it too.
        let handshake = limits.idle_timeout.min(Duration::from_secs(10));
        builder = builder.tls_config(server_tls(tls)?.timeout(handshake))?;
    }
    let incoming = limited_incoming(listener, &limits);
    builder
        .trace_fn(|request| {
            let span = tracing::info_span!("grpc", method = %request.uri().path());
            // Continue the caller's trace when it sent one.
            if let Some(parent) = request
                .headers()
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
            {
                crate::telemetry::propagation::adopt(&span, parent);
            }
            span
        })
        // Calls open per connection, for the idle timeout (outermost: it sees every call).
        .layer(OpenCallsLayer)
        .layer(TimeoutLayer {
            unary: limits.request_timeout,
            long: limits.stream_timeout,
            long_calls: Arc::new(limits.long_calls.clone()),
        })
        // RPC latency and status per method (nothing recorded without a meter provider).
        .layer(crate::metrics::RpcMetricsLayer)
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await?;
    Ok(())
}

/// How a client reaches a server: its URL, and for `https://` the CA to trust (else the
/// system's roots) and a client certificate and key (for mutual TLS).
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// A server address as a URL: `127.0.0.1:50051` (what `cwsm serve` prints as its listen
/// address) means `http://127.0.0.1:50051`; an address with a scheme is kept as it is.
pub fn server_url(address: &str) -> String {
    let address = address.trim();
    if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    }
}

/// An endpoint for `url` (`http://` plaintext, `https://` TLS with `tls`).
pub fn client_endpoint(url: &str, tls: &ClientTls) -> anyhow::Result<tonic::transport::Endpoint> {
    let url = &server_url(url);
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_string())
        .with_context(|| format!("server URL {url:?}"))?;
    if !url.starts_with("https://") {
        return Ok(endpoint);
    }
    let read =
        |path: &PathBuf| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    let mut config = tonic::transport::ClientTlsConfig::new();
    config = match &tls.ca {
        Some(ca) => config.ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?)),
        None => config.with_native_roots(),
    };
    match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            config = config.identity(tonic::transport::Identity::from_pem(
                read(cert)?,
                read(key)?,
            ));
        }
        (None, None) => {}
        _ => anyhow::bail!("a client certificate and its key go together"),
    }
    Ok(endpoint.tls_config(config)?)
}

fn server_tls(files: &TlsFiles) -> anyhow::Result<tonic::transport::ServerTlsConfig> {
    let read =
        |path: &PathBuf| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    let identity = tonic::transport::Identity::from_pem(read(&files.cert)?, read(&files.key)?);
    let mut config = tonic::transport::ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &files.client_ca {
        config = config.client_ca_root(tonic::transport::Certificate::from_pem(read(ca)?));
    }
    Ok(config)
}

/// Accepted connections within `max_connections`: each holds a permit until it closes; one
/// beyond the limit is closed at once (rather than left in the backlog, where it would hold
/// the client's call until its own timeout).
fn limited_incoming(
    listener: TcpListener,
    limits: &Limits,
) -> impl futures::Stream<Item = std::io::Result<LimitedConn>> + Send + 'static {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let idle = limits.idle_timeout;
    let keepalive = socket2::TcpKeepalive::new().with_time(limits.tcp_keepalive);
    futures::stream::unfold(
        (listener, permits, 0u64),
        move |(listener, permits, mut refused)| {
            let keepalive = keepalive.clone();
            async move {
                loop {
                    let (stream, peer) = match listener.accept().await {
                        Ok(accepted) => accepted,
                        // Out of file descriptors and the like: wait a little, go on.
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        refused += 1;
                        // One line per 1,000 refused: a flood must not flood the log too.
                        if refused % 1000 == 1 {
                            tracing::warn!(%peer, refused, "connection limit reached: closing new connections");
                        }
                        drop(stream);
                        continue;
                    };
                    // Nagle's algorithm would hold small replies back ~40 ms waiting for the
                    // client's ack.
                    let _ = stream.set_nodelay(true);
                    let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
                    let conn = LimitedConn::new(stream, permit, idle);
                    return Some((Ok(conn), (listener, permits, refused)));
                }
            }
        },
    )
}

/// Calls open on one connection, and since when none is.
#[derive(Debug)]
struct Activity {
    open: AtomicUsize,
    /// When the last call ended (or the connection opened).
    quiet_since: Mutex<Instant>,
}

/// What each request of a connection finds in its extensions: its connection's activity.
#[derive(Clone, Debug)]
pub struct ConnActivity(Arc<Activity>);

/// Held while a call is open (until its response body ends).
struct OpenCall(Arc<Activity>);

impl OpenCall {
    fn new(activity: Arc<Activity>) -> OpenCall {
        activity.open.fetch_add(1, Ordering::SeqCst);
        OpenCall(activity)
    }
}

impl Drop for OpenCall {
    fn drop(&mut self) {
        if let Ok(mut at) = self.0.quiet_since.lock() {
            *at = Instant::now();
        }
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An accepted TCP connection that holds a connection permit and ends itself once no call has
/// been open on it for the idle timeout. HTTP/2 PINGs do not count as activity (a client could
/// otherwise hold a connection for ever), calls do. The check rides on reads: hyper always has
/// one pending, so a timer polled there wakes the connection when it is due.
pub struct LimitedConn {
    io: TcpStream,
    activity: Arc<Activity>,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    _permit: OwnedSemaphorePermit,
}

impl LimitedConn {
    fn new(io: TcpStream, permit: OwnedSemaphorePermit, idle: Duration) -> LimitedConn {
        LimitedConn {
            io,
            activity: Arc::new(Activity {
                open: AtomicUsize::new(0),
                quiet_since: Mutex::new(Instant::now()),
            }),
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            _permit: permit,
        }
    }

    /// Whether the connection has been idle for the timeout (and registers the timer's wake-up
    /// otherwise).
    fn idle_expired(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        while self.timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            let next = if self.activity.open.load(Ordering::SeqCst) > 0 {
                now + self.idle
            } else {
                let quiet = self
                    .activity
                    .quiet_since
                    .lock()
                    .map(|at| *at)
                    .unwrap_or(now);
                let due = quiet + self.idle;
                if due <= now {
                    return true;
                }
                due
            };
            self.timer.as_mut().reset(next);
        }
        false
    }
}

impl Connected for LimitedConn {
    type ConnectInfo = (TcpConnectInfo, ConnActivity);

    fn connect_info(&self) -> Self::ConnectInfo {
        (self.io.connect_info(), ConnActivity(self.activity.clone()))
    }
}

impl AsyncRead for LimitedConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.idle_expired(cx) {
            tracing::debug!("closing an idle connection");
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "idle connection closed",
            )));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Counts a call open on its connection until its response body has ended.
#[derive(Clone, Copy, Debug)]
struct OpenCallsLayer;

impl<S> tower::Layer<S> for OpenCallsLayer {
    type Service = OpenCalls<S>;
    fn layer(&self, inner: S) -> Self::Service {
        OpenCalls { inner }
    }
}

#[derive(Clone, Debug)]
struct OpenCalls<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for OpenCalls<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let activity = request
            .extensions()
            .get::<(TcpConnectInfo, ConnActivity)>()
            .map(|(_, a)| a.0.clone());
        let open = activity.map(OpenCall::new);
        let future = inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            Ok(match open {
                // The call stays open while its body streams (WatchReport).
                Some(open) => response.map(|body| {
                    tonic::body::Body::new(http_body_util::BodyExt::map_frame(body, move |f| {
                        let _ = &open;
                        f
                    }))
                }),
                None => response,
            })
        })
    }
}

/// A deadline on every call: `unary` for most, `long` for the paths in `long_calls`. A call
/// past it answers DEADLINE_EXCEEDED and its handler is dropped, so a request whose body never
/// comes holds nothing for longer. (A client's shorter `grpc-timeout` applies as well.)
#[derive(Clone, Debug)]
struct TimeoutLayer {
    unary: Duration,
    long: Duration,
    long_calls: Arc<Vec<String>>,
}

impl<S> tower::Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Timeout {
            inner,
            limits: self.clone(),
        }
    }
}

#[derive(Clone, Debug)]
struct Timeout<S> {
    inner: S,
    limits: TimeoutLayer,
}

impl<S, B> tower::Service<http::Request<B>> for Timeout<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let path = request.uri().path();
        let (limit, key) = if self.limits.long_calls.iter().any(|p| p == path) {
            (self.limits.long, "stream_timeout_secs")
        } else {
            (self.limits.unary, "request_timeout_secs")
        };
        let future = inner.call(request);
        Box::pin(async move {
            match tokio::time::timeout(limit, future).await {
                Ok(result) => result,
                Err(_) => Ok(tonic::Status::deadline_exceeded(format!(
                    "the call took longer than the server allows ({} s, {key})",
                    limit.as_secs()
                ))
                .into_http()),
            }
        })
    }
}

/// Streams one caller (subject and organization) may hold open at once on one kind of call
/// (IngestReadings, WatchReport): a caller cannot take the server's memory or database pool
/// by opening streams, even over many connections.
#[derive(Debug)]
pub struct CallerStreams {
    call: &'static str,
    max: usize,
    open: Mutex<HashMap<(String, Option<String>), usize>>,
}

/// An open stream of one caller; dropping it frees its place.
#[derive(Debug)]
pub struct CallerPermit {
    streams: Arc<CallerStreams>,
    key: (String, Option<String>),
}

impl CallerStreams {
    /// `call` names the call in the error; `max` streams per caller (at least 1).
    pub fn new(call: &'static str, max: usize) -> Arc<CallerStreams> {
        Arc::new(CallerStreams {
            call,
            max: max.max(1),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A place for one more stream of `who`, or RESOURCE_EXHAUSTED saying the limit.
    pub fn acquire(self: &Arc<Self>, who: &Principal) -> Result<CallerPermit> {
        let key = (who.subject.clone(), who.org.clone());
        let mut open = self
            .open
            .lock()
            .map_err(|_| Error::Internal(anyhow::anyhow!("caller stream counts poisoned")))?;
        let n = open.entry(key.clone()).or_insert(0);
        if *n >= self.max {
            return Err(Error::ResourceExhausted(format!(
                "at most {} {} streams open at once per caller (streams_per_caller); close one first",
                self.max, self.call
            )));
        }
        *n += 1;
        Ok(CallerPermit {
            streams: self.clone(),
            key,
        })
    }
}

impl Drop for CallerPermit {
    fn drop(&mut self) {
        if let Ok(mut open) = self.streams.open.lock()
            && let Some(n) = open.get_mut(&self.key)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// A token cancelled on SIGINT (Ctrl-C) or SIGTERM (what Kubernetes and docker send).
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing in-flight calls");
        cancel.cancel();
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_address_without_a_scheme_is_plain_http() {
        assert_eq!(
            super::server_url("127.0.0.1:50061"),
            "http://127.0.0.1:50061"
        );
        assert_eq!(super::server_url(" [::1]:50051 "), "http://[::1]:50051");
        assert_eq!(
            super::server_url("https://cwsm.example.cn"),
            "https://cwsm.example.cn"
        );
        assert!(super::client_endpoint("127.0.0.1:50061", &super::ClientTls::default()).is_ok());
    }
}
