//! The event bus behind one trait, checked the same way on both implementations: in-process and
//! Redis Streams with a consumer group.

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
