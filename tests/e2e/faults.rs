//! Fault tests (issue 6, item 3), against real PostgreSQL and real Redis processes, each bounded
//! in time: a reporting replica killed in the middle of a burst; two reporting replicas consuming
//! one burst; Redis killed (`kill -9`) and restarted without persistence (the events it carried
//! are lost, `RebuildCounts` brings the counts back) and with AOF (nothing lost); PostgreSQL
//! stopped at once and restarted under load. After each, the A8 indicator (contract projects
//! handed over) counts every completed project exactly once, and each prints its figures. And
//! a consumer whose Redis connection is cut while it holds an unacknowledged event gets it back
//! at once.
//!
//! PostgreSQL is the shared server of the other tests (a fresh database per test, never
//! restarted), or for the restart a server of our own (`initdb` in a temporary folder, free
//! port); Redis is the shared one under a fresh key prefix, or a `redis-server` child process on
//! a free port that the test kills and restarts. Every child process is killed and reaped when
//! its guard drops, in every path.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cwsm::app::{self, Running, Services};
use cwsm_platform::auth::Role;
use cwsm_platform::bus::{
    DeadLetter, Delivery, Envelope, EventBus, RedisBus, Subscription, topics,
};
use cwsm_platform::config::Settings;
use cwsm_platform::db::Db;
use cwsm_proto::events::v1::ProjectMilestone;
use cwsm_proto::projects::v1 as p;
use cwsm_proto::reporting::v1 as r;
use cwsm_proto::reporting::v1::reporting_service_client::ReportingServiceClient;
use cwsm_proto::types;
use cwsm_tests::{
    Backend, Bearer, TestApp, bearer, contract_a_project, eventually, postgres_and_redis_available,
    redis_url,
};
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::projects::{Calendar, measure_and_settle, set_baseline};

const A8: &str = "A8-CONTRACT-PROJECTS";
const PLAN: &str = "xinbei-2020";
const GROUP: &str = "reporting";
const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// A tap on the bus: names the replica's consumer and counts what it is handed

/// Deliveries seen by all the replicas of one test.
#[derive(Default)]
struct Tally {
    /// Stream entries (message ids) delivered at least once.
    seen: Mutex<HashSet<String>>,
    delivered: AtomicU64,
    redelivered: AtomicU64,
}

impl Tally {
    fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::SeqCst)
    }
    fn redelivered(&self) -> u64 {
        self.redelivered.load(Ordering::SeqCst)
    }
}

/// One replica's consumer: its name in the group, what it was handed and acknowledged, and
/// optionally the acknowledgement it never sends (it "dies" after committing that event).
struct Replica {
    name: String,
    tally: Arc<Tally>,
    delivered: AtomicU64,
    acked: AtomicU64,
    hang_ack_after: Option<u64>,
    hung: tokio::sync::Notify,
}

impl Replica {
    fn new(name: &str, tally: &Arc<Tally>, hang_ack_after: Option<u64>) -> Arc<Replica> {
        Arc::new(Replica {
            name: name.to_string(),
            tally: tally.clone(),
            delivered: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            hang_ack_after,
            hung: tokio::sync::Notify::new(),
        })
    }
}

/// The bus as one replica sees it: its consumer is called by the replica's name (the app names
/// its consumers after `HOSTNAME`, the same for two replicas in one test process).
struct Tap {
    inner: Arc<dyn EventBus>,
    replica: Arc<Replica>,
}

#[async_trait]
impl EventBus for Tap {
    async fn publish(&self, event: &Envelope) -> anyhow::Result<()> {
        self.inner.publish(event).await
    }

    async fn subscribe(
        &self,
        topic: &str,
        group: &str,
        _consumer: &str,
    ) -> anyhow::Result<Box<dyn Subscription>> {
        let inner = self
            .inner
            .subscribe(topic, group, &self.replica.name)
            .await?;
        Ok(Box::new(TapSubscription {
            inner,
            replica: self.replica.clone(),
        }))
    }

    async fn dead_letters(&self, topic: &str, limit: usize) -> anyhow::Result<Vec<DeadLetter>> {
        self.inner.dead_letters(topic, limit).await
    }

    fn describe(&self) -> String {
        format!("{} as {}", self.inner.describe(), self.replica.name)
    }
}

struct TapSubscription {
    inner: Box<dyn Subscription>,
    replica: Arc<Replica>,
}

#[async_trait]
impl Subscription for TapSubscription {
    async fn next(&mut self) -> anyhow::Result<Delivery> {
        let delivery = self.inner.next().await?;
        let tally = &self.replica.tally;
        self.replica.delivered.fetch_add(1, Ordering::SeqCst);
        tally.delivered.fetch_add(1, Ordering::SeqCst);
        let first = tally
            .seen
            .lock()
            .map(|mut seen| seen.insert(delivery.message_id.clone()))
            .unwrap_or(true);
        if !first {
            tally.redelivered.fetch_add(1, Ordering::SeqCst);
        }
        Ok(delivery)
    }

    async fn ack(&mut self, delivery: &Delivery) -> anyhow::Result<()> {
        if let Some(limit) = self.replica.hang_ack_after
            && self.replica.acked.load(Ordering::SeqCst) >= limit
        {
            // The event's effect has committed; the replica dies before acknowledging it.
            self.replica.hung.notify_one();
            std::future::pending::<()>().await;
        }
        self.inner.ack(delivery).await?;
        self.replica.acked.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn dead_letter(
        &mut self,
        delivery: &Delivery,
        letter: &DeadLetter,
    ) -> anyhow::Result<()> {
        self.inner.dead_letter(delivery, letter).await
    }
}

// ---------------------------------------------------------------------------------------------
// Processes: the app's nodes, and Redis servers of our own

/// A fresh PostgreSQL database (made and dropped by [`TestApp`], whose own all-in-one app is
/// stopped at once) on which the test starts the nodes it wants.
struct Env {
    app: TestApp,
    database_url: String,
    admin: String,
}

impl Env {
    async fn new() -> anyhow::Result<Env> {
        let mut app = TestApp::start(Backend::Postgres).await?;
        // The projects of these tests take effect today: counted by a plan for this year.
        cwsm_tests::count_this_year(app.reporting(&app.token(Role::Admin, None))).await?;
        let db = app
            .running
            .as_ref()
            .and_then(|r| r.databases.first())
            .map(|(_, db)| db.clone())
            .ok_or_else(|| anyhow::anyhow!("the test app opened no database"))?;
        let name: String = match &db {
            Db::Postgres(pool) => {
                sqlx::query_scalar("SELECT current_database()")
                    .fetch_one(pool)
                    .await?
            }
            Db::Sqlite(_) => anyhow::bail!("expected PostgreSQL"),
        };
        if let Some(running) = app.running.take() {
            running.stop().await?;
        }
        let admin_url = cwsm_tests::postgres_url();
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b.to_string())
            .unwrap_or(admin_url.clone());
        let admin = app.token(Role::Admin, None);
        Ok(Env {
            app,
            database_url: format!("{base}/{name}"),
            admin,
        })
    }

    /// Starts `services` on a port of its own, on this database and `bus`.
    async fn node(
        &self,
        services: Services,
        bus: Arc<dyn EventBus>,
        projects_url: Option<String>,
    ) -> anyhow::Result<Node> {
        let settings = Settings {
            listen: "127.0.0.1:0".to_string(),
            data_dir: std::env::temp_dir().join(format!("cwsm-fault-{}", cwsm_platform::new_id())),
            database_url: Some(self.database_url.clone()),
            outbox_poll_ms: 100,
            projects_url,
            ..Settings::default()
        };
        let shutdown = CancellationToken::new();
        let running = app::start(
            &settings,
            services,
            bus,
            self.app.keys.clone(),
            shutdown.clone(),
        )
        .await?;
        let channel = Channel::from_shared(format!("http://{}", running.addr))?
            .connect()
            .await?;
        Ok(Node {
            running: Some(running),
            shutdown,
            channel,
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.app.stop().await
    }
}

struct Node {
    running: Option<Running>,
    shutdown: CancellationToken,
    channel: Channel,
}

impl Node {
    fn addr(&self) -> String {
        self.running
            .as_ref()
            .map(|r| format!("http://{}", r.addr))
            .unwrap_or_default()
    }

    fn reporting(
        &self,
        token: &str,
    ) -> ReportingServiceClient<InterceptedService<Channel, Bearer>> {
        ReportingServiceClient::with_interceptor(self.channel.clone(), bearer(token))
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        match self.running.take() {
            Some(running) => running.stop().await,
            None => Ok(()),
        }
    }

    /// Dies without a word: its relays and consumers are aborted where they stand (nothing
    /// acknowledged, nothing rolled forward), then its server stops.
    fn kill(mut self) {
        drop(self.running.take());
        self.shutdown.cancel();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A `redis-server` child process on a port of its own; killed (and waited for) on drop.
struct RedisProcess {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    aof: bool,
}

impl RedisProcess {
    async fn start(aof: bool) -> anyhow::Result<RedisProcess> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(format!("cwsm-redis-{}", cwsm_platform::new_id()));
        std::fs::create_dir_all(&dir)?;
        let mut redis = RedisProcess {
            child: None,
            port,
            dir,
            aof,
        };
        redis.restart().await?;
        Ok(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again, on the same port and folder) and waits until it answers.
    async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        let mut command = Command::new("/usr/bin/redis-server");
        command
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(&self.dir)
            .arg("--save")
            .arg("");
        if self.aof {
            command.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            command.args(["--appendonly", "no"]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let client = redis::Client::open(self.url())?;
        let up = eventually(Duration::from_secs(10), || {
            let client = client.clone();
            async move {
                let mut conn = client.get_multiplexed_async_connection().await.ok()?;
                let pong: String = redis::cmd("PING").query_async(&mut conn).await.ok()?;
                // With AOF, the server answers LOADING until the file is read back.
                (pong == "PONG").then_some(())
            }
        })
        .await;
        up.ok_or_else(|| anyhow::anyhow!("redis-server on port {} never answered", self.port))
    }

    /// `kill -9`, and reaps the process.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------------------------
// Events, counts, figures

/// A synthetic milestone of project `n` of run `run`: a school's contract signed (today, the
/// plan of this year's window), so A8 counts it.
fn hand_over(run: &str, n: usize, event_id: &str) -> Envelope {
    let now = cwsm_platform::now_ms() / 1000 - 60;
    let event = ProjectMilestone {
        event_id: event_id.to_string(),
        project_id: format!("{run}-project-{n}"),
        proposal_id: format!("{run}-proposal-{n}"),
        sequence: i64::try_from(n).unwrap_or_default() + 1,
        milestone: types::Milestone::Contracted as i32,
        occurred_time: Some(prost_types::Timestamp {
            seconds: now,
            nanos: 0,
        }),
        project_title: format!("Campus retrofit {n}"),
        sector: types::Sector::School as i32,
        unit_type: "university".into(),
        town: "新桥街道".into(),
        indicator_tags: vec![types::IndicatorTag::ContractProject as i32],
        contract_model: types::ContractModel::SharedSavings as i32,
        ..Default::default()
    };
    Envelope {
        event_id: event.event_id.clone(),
        topic: topics::PROJECT_MILESTONES.into(),
        kind: topics::PROJECT_MILESTONE_KIND.into(),
        payload: prost::Message::encode_to_vec(&event),
        occurred_at_ms: now * 1000,
        trace_parent: String::new(),
    }
}

fn event_id(run: &str, n: usize) -> String {
    format!("{run}-event-{n}")
}

/// Publishes, retrying for up to 10 s while Redis is away (as the outbox relay does).
async fn publish_retrying(bus: &dyn EventBus, event: &Envelope) -> anyhow::Result<u32> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut failures = 0;
    loop {
        match bus.publish(event).await {
            Ok(()) => return Ok(failures),
            Err(e) if tokio::time::Instant::now() < deadline => {
                failures += 1;
                tracing::debug!(error = %format!("{e:#}"), "publish failed; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A8's actual value, when the report answers.
async fn a8(node: &Node, admin: &str) -> anyhow::Result<f64> {
    cwsm_tests::indicator_actual(node.reporting(admin), PLAN, A8).await
}

/// The projects A8 counted, every page (listed, so a double shows).
async fn counted_projects(node: &Node, admin: &str) -> anyhow::Result<Vec<String>> {
    cwsm_tests::counted_projects(node.reporting(admin), PLAN, A8).await
}

/// Reporting's own dead letters (events it could not read) and the bus's.
async fn dead_letters(node: &Node, admin: &str, bus: &dyn EventBus) -> anyhow::Result<usize> {
    let reporting = node
        .reporting(admin)
        .list_dead_letters(r::ListDeadLettersRequest {
            page_size: 100,
            page_token: String::new(),
        })
        .await?
        .into_inner()
        .dead_letters
        .len();
    let bus = bus
        .dead_letters(topics::PROJECT_MILESTONES, 100)
        .await?
        .len();
    Ok(reporting + bus)
}

async fn redis_conn(url: &str) -> anyhow::Result<redis::aio::MultiplexedConnection> {
    Ok(redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?)
}

/// Entries delivered to the group (or to one consumer of it) and not acknowledged.
async fn pending(url: &str, key: &str, consumer: Option<&str>) -> anyhow::Result<usize> {
    let mut conn = redis_conn(url).await?;
    let mut command = redis::cmd("XPENDING");
    command.arg(key).arg(GROUP).arg("-").arg("+").arg(100_000);
    if let Some(consumer) = consumer {
        command.arg(consumer);
    }
    let entries: Vec<redis::Value> = command.query_async(&mut conn).await?;
    Ok(entries.len())
}

async fn stream_len(url: &str, key: &str) -> anyhow::Result<usize> {
    let mut conn = redis_conn(url).await?;
    Ok(redis::cmd("XLEN").arg(key).query_async(&mut conn).await?)
}

/// Deletes the test's keys on a shared Redis (its own prefix only).
async fn delete_keys(url: &str, bus: &RedisBus) -> anyhow::Result<()> {
    let mut conn = redis_conn(url).await?;
    let _: i64 = redis::cmd("DEL")
        .arg(bus.stream_key(topics::PROJECT_MILESTONES))
        .arg(bus.dead_letter_key(topics::PROJECT_MILESTONES))
        .query_async(&mut conn)
        .await?;
    Ok(())
}

/// Waits until A8 reaches `n` and the group holds nothing unacknowledged; returns A8 then.
async fn settled(node: &Node, admin: &str, n: f64, redis: &str, key: &str) -> anyhow::Result<f64> {
    let reached = eventually(WAIT, || async {
        a8(node, admin).await.ok().filter(|v| *v >= n)
    })
    .await;
    anyhow::ensure!(
        reached.is_some(),
        "A8 never reached {n}: {:?}",
        a8(node, admin).await.ok()
    );
    let drained = eventually(WAIT, || async {
        pending(redis, key, None).await.ok().filter(|p| *p == 0)
    })
    .await;
    anyhow::ensure!(drained.is_some(), "the group kept unacknowledged entries");
    a8(node, admin).await
}

fn assert_exact(projects: &[String], expected: usize) {
    let unique: HashSet<&String> = projects.iter().collect();
    assert_eq!(projects.len(), expected, "counted projects listed");
    assert_eq!(unique.len(), expected, "no project listed twice");
}

// ---------------------------------------------------------------------------------------------
// 1. A consumer killed in the middle of a burst

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reporting_replica_killed_mid_burst_loses_and_doubles_nothing() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    const N: usize = 200;
    const ACKED_BEFORE_DEATH: u64 = 80;
    let env = Env::new().await?;
    let url = redis_url();
    let run = cwsm_platform::new_id();
    let bus = RedisBus::connect_with_prefix(&url, &format!("cwsm-fault-{run}")).await?;
    let key = bus.stream_key(topics::PROJECT_MILESTONES);
    let result = async {
        for n in 0..N {
            bus.publish(&hand_over(&run, n, &event_id(&run, n))).await?;
        }
        let tally = Arc::new(Tally::default());
        // The first replica handles 80 events, commits the 81st and dies before acknowledging.
        let doomed = Replica::new("reporting@doomed", &tally, Some(ACKED_BEFORE_DEATH));
        let first = env
            .node(
                Services::only("reporting")?,
                Arc::new(Tap {
                    inner: Arc::new(bus.clone()),
                    replica: doomed.clone(),
                }),
                None,
            )
            .await?;
        tokio::time::timeout(WAIT, doomed.hung.notified())
            .await
            .map_err(|_| anyhow::anyhow!("the first replica never got through 80 events"))?;
        first.kill();
        let held = pending(&url, &key, Some("reporting@doomed")).await?;
        assert!(held >= 1, "the replica died holding the event it committed");

        // A second replica of the group takes over what the dead one held (idle 300 ms).
        let survivor = Replica::new("reporting@survivor", &tally, None);
        let second = env
            .node(
                Services::only("reporting")?,
                Arc::new(Tap {
                    inner: Arc::new(bus.clone().with_claim_idle(Duration::from_millis(300))),
                    replica: survivor.clone(),
                }),
                None,
            )
            .await?;
        let counted = settled(&second, &env.admin, N as f64, &url, &key).await?;
        let projects = counted_projects(&second, &env.admin).await?;
        let dead = dead_letters(&second, &env.admin, &bus).await?;
        let (delivered, redelivered) = (tally.delivered(), tally.redelivered());
        // Redis delivered to the killed replica what it acknowledged and what it held (read
        // into its buffer, or committed and never acknowledged); the survivor was given the
        // rest and took over what was held. The handlers were handed fewer: the killed
        // replica's buffer died with it.
        let survivor_handed = survivor.delivered.load(Ordering::SeqCst);
        let by_redis = ACKED_BEFORE_DEATH as usize + held + (N - ACKED_BEFORE_DEATH as usize);
        eprintln!(
            "faults::killed_mid_burst: events sent {N}, delivered {by_redis} by Redis ({delivered} \
             handed to a handler: killed replica {}, survivor {survivor_handed}), redelivered \
             {held} (taken over from the killed replica; {redelivered} of them already applied \
             there and deduplicated), dead-lettered {dead}; A8 counted {counted}",
            doomed.delivered.load(Ordering::SeqCst),
        );
        assert_eq!(counted, N as f64, "every hand-over counted once");
        assert_exact(&projects, N);
        assert_eq!(dead, 0);
        assert_eq!(
            pending(&url, &key, Some("reporting@doomed")).await?,
            0,
            "nothing left with the dead replica"
        );
        assert!(
            redelivered >= 1,
            "the event committed but not acknowledged came again"
        );
        assert_eq!(delivered, N as u64 + redelivered);
        assert!(
            survivor_handed >= N as u64 - ACKED_BEFORE_DEATH,
            "the survivor handled all that was not acknowledged"
        );
        second.stop().await
    }
    .await;
    delete_keys(&url, &bus).await?;
    env.stop().await?;
    result
}

// ---------------------------------------------------------------------------------------------
// 2. Two reporting replicas consuming one burst

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_reporting_replicas_share_a_burst_and_count_it_once() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    const N: usize = 200;
    let env = Env::new().await?;
    let url = redis_url();
    let run = cwsm_platform::new_id();
    let bus = RedisBus::connect_with_prefix(&url, &format!("cwsm-fault-{run}")).await?;
    let key = bus.stream_key(topics::PROJECT_MILESTONES);
    let result = async {
        let tally = Arc::new(Tally::default());
        let replicas = [
            Replica::new("reporting@replica-1", &tally, None),
            Replica::new("reporting@replica-2", &tally, None),
        ];
        let mut nodes = Vec::new();
        for replica in &replicas {
            nodes.push(
                env.node(
                    Services::only("reporting")?,
                    Arc::new(Tap {
                        inner: Arc::new(bus.clone()),
                        replica: replica.clone(),
                    }),
                    None,
                )
                .await?,
            );
        }
        // Every hand-over once; a quarter of them published twice under the same event id, a
        // quarter re-emitted under a new event id: the replicas may meet one project at once.
        let mut sent = 0;
        for n in 0..N {
            let id = event_id(&run, n);
            bus.publish(&hand_over(&run, n, &id)).await?;
            sent += 1;
            match n % 4 {
                0 => {
                    bus.publish(&hand_over(&run, n, &id)).await?;
                    sent += 1;
                }
                2 => {
                    bus.publish(&hand_over(&run, n, &format!("{id}-again")))
                        .await?;
                    sent += 1;
                }
                _ => {}
            }
            if n % 25 == 24 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let counted = settled(&nodes[0], &env.admin, N as f64, &url, &key).await?;
        let all_handed =
            eventually(WAIT, || async { (tally.delivered() >= sent).then_some(()) }).await;
        assert!(all_handed.is_some(), "every entry delivered");
        let projects = counted_projects(&nodes[1], &env.admin).await?;
        let dead = dead_letters(&nodes[0], &env.admin, &bus).await?;
        let per_replica: Vec<u64> = replicas
            .iter()
            .map(|r| r.delivered.load(Ordering::SeqCst))
            .collect();
        eprintln!(
            "faults::two_replicas: events sent {sent} ({N} projects, {} duplicates), delivered {} \
             (replica 1: {}, replica 2: {}), redelivered {}, dead-lettered {dead}; A8 counted \
             {counted}",
            sent - N as u64,
            tally.delivered(),
            per_replica[0],
            per_replica[1],
            tally.redelivered(),
        );
        assert_eq!(counted, N as f64, "every project counted once");
        assert_eq!(
            a8(&nodes[1], &env.admin).await?,
            N as f64,
            "both replicas agree"
        );
        assert_exact(&projects, N);
        assert_eq!(dead, 0);
        assert_eq!(tally.delivered(), sent + tally.redelivered());
        assert!(
            per_replica.iter().all(|n| *n > 0),
            "each replica handled some: {per_replica:?}"
        );
        for node in nodes {
            node.stop().await?;
        }
        Ok(())
    }
    .await;
    delete_keys(&url, &bus).await?;
    env.stop().await?;
    result
}

// ---------------------------------------------------------------------------------------------
// 3. Redis restarted without persistence: the events it carried are lost; reconcile

/// Contracts a project in `town` and moves it to completion (handed over), each step by the
/// party whose step it is, with a settled period before the hand-over.
async fn complete_a_project(app: &TestApp, town: &str) -> anyhow::Result<String> {
    let c = contract_a_project(app, town).await?;
    let calendar = Calendar::now();
    set_baseline(app, &c.user_token, &c.project_id, &calendar).await?;
    for (stage, token) in [
        (p::ProjectStage::Implementing, &c.company_token),
        (p::ProjectStage::Commissioned, &c.company_token),
        (p::ProjectStage::Accepted, &c.user_token),
        (p::ProjectStage::Operating, &c.company_token),
        (p::ProjectStage::HandedOver, &c.user_token),
    ] {
        if stage == p::ProjectStage::HandedOver {
            measure_and_settle(app, &c.project_id, &c.company_token, &calendar).await?;
        }
        app.projects(token)
            .transition_project(p::TransitionProjectRequest {
                request_id: format!("move-{}", cwsm_platform::new_id()),
                project_id: c.project_id.clone(),
                to_stage: stage as i32,
                reason: String::new(),
                expected_version: 0,
                evidence: format!("{} report 2020-001", stage.as_str_name()),
                effective_date: String::new(),
            })
            .await?;
    }
    Ok(c.project_id)
}

/// Whether `project`'s hand-over is on the milestones stream.
async fn handed_over_on_stream(url: &str, key: &str, project: &str) -> anyhow::Result<bool> {
    let mut conn = redis_conn(url).await?;
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await?;
    Ok(reply.ids.iter().any(|entry| {
        let Some(redis::Value::BulkString(payload)) = entry.map.get("payload") else {
            return false;
        };
        <ProjectMilestone as prost::Message>::decode(payload.as_slice()).is_ok_and(|m| {
            m.project_id == project && m.milestone == types::Milestone::HandedOver as i32
        })
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_restarted_without_persistence_then_reconciled() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    let mut env = Env::new().await?;
    let mut redis = RedisProcess::start(false).await?;
    let result = async {
        let url = redis.url();
        let bus = RedisBus::connect_with_prefix(&url, "cwsm")
            .await?
            .with_claim_idle(Duration::from_millis(500));
        let key = bus.stream_key(topics::PROJECT_MILESTONES);
        let tally = Arc::new(Tally::default());
        // matching and projects in one node, reporting in another (it rebuilds from projects).
        let core = env
            .node(
                Services {
                    matching: true,
                    projects: true,
                    reporting: false,
                    accounts: false,
                },
                Arc::new(bus.clone()),
                None,
            )
            .await?;
        env.app.channel = core.channel.clone();
        let reporting_node = |name: &'static str| {
            let bus = bus.clone();
            let tally = tally.clone();
            let env = &env;
            let projects_url = core.addr();
            async move {
                env.node(
                    Services::only("reporting")?,
                    Arc::new(Tap {
                        inner: Arc::new(bus),
                        replica: Replica::new(name, &tally, None),
                    }),
                    Some(projects_url),
                )
                .await
            }
        };
        let reporting = reporting_node("reporting@before").await?;
        let first = complete_a_project(&env.app, "薛家镇").await?;
        assert_eq!(settled(&reporting, &env.admin, 1.0, &url, &key).await?, 1.0);

        // Reporting down; a second project completes and its events wait on the stream...
        reporting.stop().await?;
        let second = complete_a_project(&env.app, "罗溪镇").await?;
        let on_stream = eventually(WAIT, || async {
            handed_over_on_stream(&url, &key, &second)
                .await
                .ok()
                .filter(|b| *b)
        })
        .await;
        assert!(on_stream.is_some(), "the second hand-over reached Redis");
        // ...when Redis dies and comes back empty.
        redis.kill();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        redis.restart().await?;
        assert_eq!(stream_len(&url, &key).await?, 0, "Redis came back empty");

        // Both nodes go on: the consumers of the core node recreate their groups (NOGROUP), the
        // relays reconnect, a new reporting replica joins; a third project completes.
        let reporting = reporting_node("reporting@after").await?;
        let third = complete_a_project(&env.app, "春江街道").await?;
        let before_rebuild = settled(&reporting, &env.admin, 2.0, &url, &key).await?;
        assert_eq!(
            before_rebuild, 2.0,
            "the second project's events went down with Redis"
        );
        let rebuilt = reporting
            .reporting(&env.admin)
            .rebuild_counts(r::RebuildCountsRequest {
                request_id: format!("rebuild-{}", cwsm_platform::new_id()),
                plan_code: PLAN.into(),
            })
            .await?
            .into_inner();
        let count = |list: &[r::IndicatorCount]| {
            list.iter()
                .find(|c| c.indicator_code == A8)
                .map(|c| c.count)
        };
        let counted = a8(&reporting, &env.admin).await?;
        let projects = counted_projects(&reporting, &env.admin).await?;
        let dead = dead_letters(&reporting, &env.admin, &bus).await?;
        eprintln!(
            "faults::redis_without_persistence: events sent {} (milestone log), delivered {}, \
             redelivered {}, dead-lettered {dead}; A8 before reconcile {before_rebuild}, after {counted}",
            rebuilt.events_read,
            tally.delivered(),
            tally.redelivered(),
        );
        assert_eq!(count(&rebuilt.counts_before), Some(2));
        assert_eq!(count(&rebuilt.counts_after), Some(3));
        assert_eq!(counted, 3.0, "the reconcile brings the count back exact");
        assert_exact(&projects, 3);
        for project in [&first, &second, &third] {
            assert!(projects.contains(project), "{project} counted");
        }
        assert_eq!(dead, 0);
        reporting.stop().await?;
        core.stop().await
    }
    .await;
    redis.kill();
    env.stop().await?;
    result
}

// ---------------------------------------------------------------------------------------------
// 4. Redis restarted with AOF: nothing lost

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_restarted_with_aof_loses_nothing() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    const N: usize = 200;
    let env = Env::new().await?;
    let mut redis = RedisProcess::start(true).await?;
    let result = async {
        let url = redis.url();
        let bus = RedisBus::connect_with_prefix(&url, "cwsm")
            .await?
            .with_claim_idle(Duration::from_millis(300));
        let key = bus.stream_key(topics::PROJECT_MILESTONES);
        let run = cwsm_platform::new_id();
        let tally = Arc::new(Tally::default());
        let replica = Replica::new("reporting@aof", &tally, None);
        let node = env
            .node(
                Services::only("reporting")?,
                Arc::new(Tap {
                    inner: Arc::new(bus.clone()),
                    replica,
                }),
                None,
            )
            .await?;
        let mut retries = 0;
        for n in 0..N / 2 {
            retries += publish_retrying(&bus, &hand_over(&run, n, &event_id(&run, n))).await?;
        }
        // Killed while reporting is still working through the first half.
        let started = eventually(WAIT, || async {
            a8(&node, &env.admin).await.ok().filter(|v| *v >= 20.0)
        })
        .await;
        assert!(started.is_some(), "reporting started on the burst");
        redis.kill();
        let at_kill = a8(&node, &env.admin).await?;
        // Down long enough for the consumer's back-off to grow past its sweep interval.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        redis.restart().await?;
        for n in N / 2..N {
            retries += publish_retrying(&bus, &hand_over(&run, n, &event_id(&run, n))).await?;
        }
        let counted = settled(&node, &env.admin, N as f64, &url, &key).await?;
        let projects = counted_projects(&node, &env.admin).await?;
        let dead = dead_letters(&node, &env.admin, &bus).await?;
        let kept = stream_len(&url, &key).await?;
        eprintln!(
            "faults::redis_with_aof: events sent {N} ({retries} publish retries), delivered {}, \
             redelivered {}, dead-lettered {dead}; on the stream after restart {kept}; A8 at kill \
             {at_kill}, counted {counted}",
            tally.delivered(),
            tally.redelivered(),
        );
        assert!(at_kill < N as f64, "killed mid-burst");
        assert_eq!(kept, N, "the stream survived the restart whole");
        assert_eq!(counted, N as f64, "nothing lost, nothing counted twice");
        assert_exact(&projects, N);
        assert_eq!(dead, 0);
        node.stop().await
    }
    .await;
    redis.kill();
    env.stop().await?;
    result
}

// ---------------------------------------------------------------------------------------------
// 5. PostgreSQL restarted under load (a server of our own, never the shared one)

/// A PostgreSQL server of our own (`initdb` into a temporary folder, run as the `postgres`
/// user, on a free port); killed (and waited for) on drop.
struct PostgresProcess {
    child: Option<Child>,
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    uid: u32,
    gid: u32,
}

impl PostgresProcess {
    /// `None` when this machine has no PostgreSQL binaries or no `postgres` user.
    async fn start() -> anyhow::Result<Option<PostgresProcess>> {
        use std::os::unix::process::CommandExt;
        let Some(bin) = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|dirs| dirs.flatten().map(|d| d.path().join("bin")).max())
            .filter(|bin| bin.join("initdb").is_file() && bin.join("postgres").is_file())
        else {
            return Ok(None);
        };
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let Some((uid, gid)) = passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&"postgres") && fields.len() > 3)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        }) else {
            return Ok(None);
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(format!("cwsm-pg-{}", cwsm_platform::new_id()));
        std::fs::create_dir_all(&dir)?;
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
        let status = Command::new(bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(dir.join("data"))
            .uid(uid)
            .gid(gid)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        anyhow::ensure!(status.success(), "initdb failed: {status}");
        let mut pg = PostgresProcess {
            child: None,
            bin,
            dir,
            port,
            uid,
            gid,
        };
        pg.restart().await?;
        Ok(Some(pg))
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again, on the same port and data) and waits until it answers; starts
    /// again if it exits at once, for at most 15 s.
    async fn restart(&mut self) -> anyhow::Result<()> {
        use std::os::unix::process::CommandExt;
        self.kill();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let mut child = Command::new(self.bin.join("postgres"))
                .arg("-D")
                .arg(self.dir.join("data"))
                .arg("-p")
                .arg(self.port.to_string())
                .arg("-k")
                .arg(&self.dir)
                .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
                .uid(self.uid)
                .gid(self.gid)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            let url = self.url();
            let mut up = None;
            for _ in 0..50 {
                if child.try_wait().ok().flatten().is_some() {
                    up = Some(false);
                    break;
                }
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(1))
                    .connect(&url)
                    .await;
                if let Ok(pool) = pool {
                    pool.close().await;
                    up = Some(true);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if up == Some(true) {
                self.child = Some(child);
                return Ok(());
            }
            let _ = child.kill();
            let _ = child.wait();
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "PostgreSQL on port {} never came up",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Immediate shutdown (SIGQUIT to the postmaster): every backend quits at once without
    /// cleaning up, clients lose their connections mid-transaction, and the next start replays
    /// the WAL, as after a crash. Unlike `kill -9` of the postmaster alone, its backends are
    /// reaped rather than left behind; `kill -9` if it has not ended within 5 s.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-QUIT")
                .arg(child.id().to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            for _ in 0..50 {
                if child.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PostgresProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restarted_under_load_loses_and_doubles_nothing() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    let Some(mut pg) = PostgresProcess::start().await? else {
        eprintln!("skipped: no PostgreSQL binaries or postgres user to run a server of our own");
        return Ok(());
    };
    const N: usize = 200;
    let url = redis_url();
    let run = cwsm_platform::new_id();
    let bus = RedisBus::connect_with_prefix(&url, &format!("cwsm-fault-{run}")).await?;
    let key = bus.stream_key(topics::PROJECT_MILESTONES);
    let result = async {
        let tally = Arc::new(Tally::default());
        let settings = Settings {
            listen: "127.0.0.1:0".to_string(),
            data_dir: std::env::temp_dir().join(format!("cwsm-fault-{run}")),
            database_url: Some(pg.url()),
            outbox_poll_ms: 100,
            ..Settings::default()
        };
        let keys = Arc::new(cwsm_platform::auth::Keys::from_secret(&[42u8; 32])?);
        let admin = keys.issue("test", Role::Admin, None, Duration::from_secs(600))?;
        let shutdown = CancellationToken::new();
        let running = app::start(
            &settings,
            Services::only("reporting")?,
            Arc::new(Tap {
                inner: Arc::new(bus.clone()),
                replica: Replica::new("reporting@pg", &tally, None),
            }),
            keys,
            shutdown.clone(),
        )
        .await?;
        let node = Node {
            channel: Channel::from_shared(format!("http://{}", running.addr))?
                .connect()
                .await?,
            running: Some(running),
            shutdown,
        };
        // The synthetic signings take effect today: counted by a plan for this year.
        cwsm_tests::count_this_year(node.reporting(&admin)).await?;
        for n in 0..N {
            bus.publish(&hand_over(&run, n, &event_id(&run, n))).await?;
        }
        let started = eventually(WAIT, || async {
            a8(&node, &admin).await.ok().filter(|v| *v >= 20.0)
        })
        .await;
        assert!(started.is_some(), "reporting started on the burst");
        pg.kill();
        let at_kill = tally.delivered();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        pg.restart().await?;
        let counted = settled(&node, &admin, N as f64, &url, &key).await?;
        let projects = counted_projects(&node, &admin).await?;
        let dead = dead_letters(&node, &admin, &bus).await?;
        eprintln!(
            "faults::postgres_restart: events sent {N}, delivered {} (handed when PostgreSQL \
             died: {at_kill}), redelivered {}, dead-lettered {dead}; A8 counted {counted}",
            tally.delivered(),
            tally.redelivered(),
        );
        assert!(at_kill < N as u64, "killed mid-burst");
        assert_eq!(counted, N as f64, "nothing lost, nothing counted twice");
        assert_exact(&projects, N);
        assert_eq!(dead, 0);
        node.stop().await
    }
    .await;
    delete_keys(&url, &bus).await?;
    pg.kill();
    result
}

/// A consumer's connection to Redis breaks while it holds an event it has not acknowledged
/// (handled, but the XACK went down with the connection): on reconnecting it reads its own
/// pending entries first, so the event comes back at once, not when a sweep finds it idle (a
/// minute by default, which is why the wait here is far shorter).
#[tokio::test]
async fn a_consumer_whose_connection_broke_gets_its_unacknowledged_event_back_at_once()
-> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    let redis = RedisProcess::start(false).await?;
    let bus = RedisBus::connect_with_prefix(&redis.url(), "cwsm-test").await?;
    let event = Envelope {
        event_id: cwsm_platform::new_id(),
        topic: "test.topic".into(),
        kind: "test.Kind".into(),
        payload: vec![1, 2, 3],
        occurred_at_ms: 0,
        trace_parent: String::new(),
    };
    bus.publish(&event).await?;
    let mut sub = bus.subscribe("test.topic", GROUP, "consumer-1").await?;
    let held = tokio::time::timeout(Duration::from_secs(10), sub.next()).await??;
    assert_eq!(held.envelope, event);

    // Every client connection but this one is cut (this Redis serves only this test).
    let mut admin = redis_conn(&redis.url()).await?;
    let cut: i64 = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"])
        .query_async(&mut admin)
        .await?;
    assert!(cut >= 1, "the subscription's connection was cut");
    assert!(
        sub.ack(&held).await.is_err(),
        "the XACK goes down with the connection"
    );

    let started = std::time::Instant::now();
    let again = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            // The first read meets the broken connection and reconnects.
            match sub.next().await {
                Ok(delivery) => return delivery,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await;
    let again = again.map_err(|_| anyhow::anyhow!("the held event did not come back"))?;
    eprintln!(
        "faults::reconnect: the unacknowledged event came back {} ms after the cut",
        started.elapsed().as_millis()
    );
    assert_eq!(again.envelope, event);
    sub.ack(&again).await?;
    assert_eq!(
        pending(&redis.url(), &bus.stream_key("test.topic"), None).await?,
        0
    );
    Ok(())
}
