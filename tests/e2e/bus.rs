//! The event bus behind one trait, checked the same way on both implementations: in-process (in
//! memory, and kept in its file as `cwsm serve` runs it) and Redis Streams with a consumer group.

use std::sync::Arc;
use std::time::Duration;

use cwsm_platform::bus::{Envelope, EventBus, InProcessBus, RedisBus, Subscription};
use cwsm_tests::{postgres_and_redis_available, redis_url};

fn event(n: u32) -> Envelope {
    Envelope {
        event_id: format!("event-{n}"),
        topic: "test.topic".into(),
        kind: "test.Kind".into(),
        payload: vec![n as u8, 0, 255],
        occurred_at_ms: 1_700_000_000_000 + i64::from(n),
        trace_parent: String::new(),
    }
}

async fn next(sub: &mut Box<dyn Subscription>) -> anyhow::Result<Envelope> {
    Ok(tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await??
        .envelope)
}

/// At-least-once: an unacknowledged event comes back to the consumer that reconnects; a group
/// made after events were published still sees them; payload bytes arrive intact.
async fn delivers_at_least_once(bus: Arc<dyn EventBus>) -> anyhow::Result<()> {
    for n in 1..=3 {
        bus.publish(&event(n)).await?;
    }
    let mut sub = bus.subscribe("test.topic", "group-a", "consumer-1").await?;
    let first = sub.next().await?;
    assert_eq!(first.envelope, event(1));
    sub.ack(&first).await?;
    let second = next(&mut sub).await?;
    assert_eq!(second, event(2));
    // The consumer dies before acknowledging the second event.
    drop(sub);
    let mut again = bus.subscribe("test.topic", "group-a", "consumer-1").await?;
    let redelivered = again.next().await?;
    assert_eq!(
        redelivered.envelope,
        event(2),
        "an unacknowledged event is delivered again"
    );
    again.ack(&redelivered).await?;
    let third = again.next().await?;
    assert_eq!(third.envelope, event(3));
    again.ack(&third).await?;

    // Another group, made now, reads from the start of the topic.
    let mut late = bus.subscribe("test.topic", "group-b", "consumer-1").await?;
    assert_eq!(next(&mut late).await?, event(1));

    // A new event reaches a waiting consumer.
    let waiting = tokio::spawn(async move { next(&mut again).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    bus.publish(&event(4)).await?;
    assert_eq!(waiting.await??, event(4));
    Ok(())
}

#[tokio::test]
async fn in_process_bus_delivers_at_least_once() -> anyhow::Result<()> {
    delivers_at_least_once(Arc::new(InProcessBus::new())).await
}

/// A fresh file for an in-process bus, in a folder of its own (removed by the caller).
fn bus_file() -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf)> {
    let dir = std::env::temp_dir().join(format!("cwsm-bus-{}", cwsm_platform::new_id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(InProcessBus::FILE);
    Ok((dir, file))
}

#[tokio::test]
async fn in_process_bus_in_a_file_delivers_at_least_once() -> anyhow::Result<()> {
    let (dir, file) = bus_file()?;
    let result = delivers_at_least_once(Arc::new(InProcessBus::open(&file).await?)).await;
    let _ = std::fs::remove_dir_all(dir);
    result
}

/// What `kill -9` of `cwsm serve` leaves: the bus opened again on its file has every event
/// published, each group's cursor as acknowledged (an event handed over and not acknowledged
/// comes again), the dead letters, and goes on numbering after the last event.
#[tokio::test]
async fn in_process_bus_in_a_file_survives_a_restart() -> anyhow::Result<()> {
    let (dir, file) = bus_file()?;
    let result = async {
        let bus = InProcessBus::open(&file).await?;
        for n in 1..=3 {
            bus.publish(&event(n)).await?;
        }
        let mut a = bus.subscribe("test.topic", "group-a", "consumer-1").await?;
        let first = a.next().await?;
        a.ack(&first).await?;
        let second = a.next().await?;
        assert_eq!(second.envelope, event(2));
        a.dead_letter(
            &second,
            &cwsm_platform::bus::DeadLetter {
                envelope: second.envelope.clone(),
                error: "cannot be read".into(),
                attempts: 1,
                dead_at_ms: 1,
            },
        )
        .await?;
        assert_eq!(
            next(&mut a).await?,
            event(3),
            "handed over, never acknowledged"
        );
        let _b = bus.subscribe("test.topic", "group-b", "consumer-1").await?;
        // The process dies: nothing is flushed or stopped in order.
        drop(a);
        bus.close().await;
        drop(bus);

        let bus = InProcessBus::open(&file).await?;
        let mut a = bus.subscribe("test.topic", "group-a", "consumer-1").await?;
        let again = a.next().await?;
        assert_eq!(
            again.envelope,
            event(3),
            "the unacknowledged event comes again"
        );
        a.ack(&again).await?;
        bus.publish(&event(4)).await?;
        assert_eq!(
            next(&mut a).await?,
            event(4),
            "numbering goes on after the log"
        );
        let mut b = bus.subscribe("test.topic", "group-b", "consumer-1").await?;
        assert_eq!(
            next(&mut b).await?,
            event(1),
            "a group that read nothing starts over"
        );
        let dead = bus.dead_letters("test.topic", 10).await?;
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].envelope, event(2));
        assert_eq!(dead[0].error, "cannot be read");
        bus.close().await;
        Ok(())
    }
    .await;
    let _ = std::fs::remove_dir_all(dir);
    result
}

#[tokio::test]
async fn redis_bus_delivers_at_least_once() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    let prefix = format!("cwsm-test-{}", cwsm_platform::new_id());
    let bus = RedisBus::connect_with_prefix(&redis_url(), &prefix).await?;
    let result = delivers_at_least_once(Arc::new(bus.clone())).await;
    let client = redis::Client::open(redis_url())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let _: i64 = redis::cmd("DEL")
        .arg(bus.stream_key("test.topic"))
        .query_async(&mut conn)
        .await?;
    result
}

/// Redis without persistence forgets streams and groups on restart; the consumer recreates its
/// group instead of stopping.
#[tokio::test]
async fn redis_consumer_recreates_a_vanished_group() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    let prefix = format!("cwsm-test-{}", cwsm_platform::new_id());
    let bus = RedisBus::connect_with_prefix(&redis_url(), &prefix).await?;
    let mut sub = bus.subscribe("test.topic", "group-a", "consumer-1").await?;
    bus.publish(&event(1)).await?;
    let first = next(&mut sub).await?;
    assert_eq!(first, event(1));
    // What a restart of Redis without persistence leaves: no stream, no group.
    let client = redis::Client::open(redis_url())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let key = bus.stream_key("test.topic");
    let _: i64 = redis::cmd("DEL").arg(&key).query_async(&mut conn).await?;
    // The consumer's next read meets NOGROUP, recreates the group, and goes on.
    let waiting = tokio::spawn(async move { next(&mut sub).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    bus.publish(&event(2)).await?;
    let got = waiting.await?;
    let _: i64 = redis::cmd("DEL").arg(&key).query_async(&mut conn).await?;
    assert_eq!(got?, event(2));
    Ok(())
}

/// Fails on the events it is told to, with a poison error (retrying cannot help).
struct Picky {
    refuse: &'static str,
    handled: tokio::sync::mpsc::UnboundedSender<String>,
}

#[async_trait::async_trait]
impl cwsm_platform::bus::EventHandler for Picky {
    async fn handle(&self, event: &Envelope) -> anyhow::Result<()> {
        if event.event_id == self.refuse {
            return Err(cwsm_platform::bus::Poison("cannot be read".into()).into());
        }
        let _ = self.handled.send(event.event_id.clone());
        Ok(())
    }
}

/// A poison event is set aside where an administrator can see it, and does not hold up the
/// events behind it.
async fn sets_poison_aside(bus: Arc<dyn EventBus>) -> anyhow::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let handler = Arc::new(Picky {
        refuse: "event-1",
        handled: tx,
    });
    let sub = bus.subscribe("test.topic", "group-a", "consumer-1").await?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let consumer = tokio::spawn(cwsm_platform::bus::consume(
        sub,
        handler,
        shutdown.clone(),
        "test",
    ));
    bus.publish(&event(1)).await?;
    bus.publish(&event(2)).await?;
    let next_handled = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await?;
    assert_eq!(
        next_handled.as_deref(),
        Some("event-2"),
        "the event behind the poison one is handled"
    );
    let dead = bus.dead_letters("test.topic", 10).await?;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].envelope, event(1));
    assert!(
        dead[0].error.contains("cannot be read"),
        "{}",
        dead[0].error
    );
    shutdown.cancel();
    consumer.await?;
    Ok(())
}

#[tokio::test]
async fn in_process_bus_sets_poison_aside() -> anyhow::Result<()> {
    sets_poison_aside(Arc::new(InProcessBus::new())).await
}

#[tokio::test]
async fn in_process_bus_in_a_file_sets_poison_aside() -> anyhow::Result<()> {
    let (dir, file) = bus_file()?;
    let result = sets_poison_aside(Arc::new(InProcessBus::open(&file).await?)).await;
    let _ = std::fs::remove_dir_all(dir);
    result
}

#[tokio::test]
async fn redis_bus_sets_poison_aside() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    let prefix = format!("cwsm-test-{}", cwsm_platform::new_id());
    let bus = RedisBus::connect_with_prefix(&redis_url(), &prefix).await?;
    let result = sets_poison_aside(Arc::new(bus.clone())).await;
    let client = redis::Client::open(redis_url())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let _: i64 = redis::cmd("DEL")
        .arg(bus.stream_key("test.topic"))
        .arg(bus.dead_letter_key("test.topic"))
        .query_async(&mut conn)
        .await?;
    result
}

/// A consumer that dies holding an event: another consumer of the group takes it over.
#[tokio::test]
async fn redis_consumer_takes_over_what_a_dead_consumer_held() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    let prefix = format!("cwsm-test-{}", cwsm_platform::new_id());
    let bus = RedisBus::connect_with_prefix(&redis_url(), &prefix)
        .await?
        .with_claim_idle(Duration::from_millis(200));
    bus.publish(&event(1)).await?;
    let mut doomed = bus.subscribe("test.topic", "group-a", "replica-1").await?;
    assert_eq!(next(&mut doomed).await?, event(1));
    drop(doomed); // killed before acknowledging
    let mut survivor = bus.subscribe("test.topic", "group-a", "replica-2").await?;
    let taken = next(&mut survivor).await;
    let client = redis::Client::open(redis_url())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let _: i64 = redis::cmd("DEL")
        .arg(bus.stream_key("test.topic"))
        .query_async(&mut conn)
        .await?;
    assert_eq!(taken?, event(1));
    Ok(())
}
