//! Controller watch: the engine's event stream as triggers.
//!
//! A stream that goes silent may be idle or dead (a half-open connection, a
//! frozen proxy): nothing tells them apart. So a subscription lives at most
//! [`ROTATE`]; the next one starts `since` the last event seen (the engine
//! replays what came after it) and events already forwarded are dropped, so
//! nothing is lost in between and nothing counts twice. A dead stream is
//! thus noticed within [`ROTATE`] + [`PING_DEADLINE`], and a change made
//! meanwhile is replayed and repaired then, not at the next resync. A stream
//! that fails is resubscribed with backoff, and a full re-list follows (the
//! engine keeps only its last events).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bollard::models::EventMessage;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::triggers::{Backoff, Trigger};
use super::Context;

/// Longest life of one subscription.
pub const ROTATE: Duration = Duration::from_secs(20);
/// How long the engine may take to answer a ping before a subscription.
pub const PING_DEADLINE: Duration = Duration::from_secs(10);
/// Before the first event, the next subscription replays from this long
/// before the last one opened (the operator's clock against the engine's).
const OVERLAP: Duration = Duration::from_secs(2);
/// Events remembered to drop replayed ones.
const SEEN: usize = 1024;

/// Whether an event can concern the stack: node events always (joins,
/// labels, state); others when they name an object of the stack or one it uses.
pub fn relevant(ev: &EventMessage, stack: &str, also: &[String], all_services: bool) -> Option<String> {
    let kind = ev.typ.map(|t| t.to_string()).unwrap_or_default();
    let action = ev.action.clone().unwrap_or_default();
    let name = ev
        .actor
        .as_ref()
        .and_then(|a| a.attributes.as_ref())
        .and_then(|a| a.get("name").cloned())
        .unwrap_or_default();
    let prefix = format!("{stack}_");
    let ours = match kind.as_str() {
        "node" => true,
        // Any service may opt in to the companion, or be it.
        "service" if all_services => true,
        "service" | "network" | "config" | "secret" => name.starts_with(&prefix) || also.contains(&name),
        _ => false,
    };
    ours.then(|| format!("{kind} {action} {name}").trim().to_string())
}

/// An event's engine time in nanoseconds.
fn event_nanos(ev: &EventMessage) -> Option<i64> {
    ev.time_nano.or(ev.time.map(|t| t.saturating_mul(1_000_000_000)))
}

/// Where the next subscription starts, and the events already forwarded.
#[derive(Default)]
pub struct Cursor {
    /// The engine's time of the last event seen (nanoseconds).
    last_nanos: Option<i64>,
    seen: HashSet<String>,
    order: VecDeque<String>,
}

impl Cursor {
    /// False for an event already seen (a replay).
    pub fn first_time(&mut self, ev: &EventMessage) -> bool {
        let nanos = event_nanos(ev);
        if let Some(n) = nanos {
            self.last_nanos = Some(self.last_nanos.map_or(n, |l| l.max(n)));
        }
        let key = format!(
            "{}|{}|{}|{}",
            nanos.unwrap_or_default(),
            ev.typ.map(|t| t.to_string()).unwrap_or_default(),
            ev.action.as_deref().unwrap_or_default(),
            ev.actor.as_ref().and_then(|a| a.id.as_deref()).unwrap_or_default()
        );
        if !self.seen.insert(key.clone()) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > SEEN {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }

    /// `since` for a subscription after one that opened at `opened`.
    pub fn since(&self, opened: Option<SystemTime>) -> Option<String> {
        if let Some(n) = self.last_nanos {
            return Some(format!(
                "{}.{:09}",
                n.div_euclid(1_000_000_000),
                n.rem_euclid(1_000_000_000)
            ));
        }
        let at = opened?.checked_sub(OVERLAP)?;
        let d = at.duration_since(SystemTime::UNIX_EPOCH).ok()?;
        Some(format!("{}.{:09}", d.as_secs(), d.subsec_nanos()))
    }
}

/// How a subscription ended.
enum End {
    /// It lived its [`ROTATE`]: the next one replays from the cursor.
    Rotate,
    Failed(String),
}

/// Runs until shutdown: subscribes, forwards relevant events, rotates and
/// resubscribes.
pub async fn watch_events(ctx: Arc<Context>, tx: mpsc::Sender<Trigger>, shutdown: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    let mut cursor = Cursor::default();
    // When the last subscription opened; None before the first.
    let mut opened: Option<SystemTime> = None;
    let mut failed = false;
    loop {
        // A renewal after a healthy subscription goes straight on (the
        // subscription's first answer is its own check); after a failure,
        // the engine must answer a ping first.
        let ping = if failed || opened.is_none() {
            ctx.engine.ping(PING_DEADLINE).await
        } else {
            Ok(())
        };
        if let Err(e) = ping {
            let msg = e.to_string();
            ctx.set_engine_error(&msg);
            failed = true;
            let delay = backoff.next_delay();
            tracing::warn!(error = %msg, retry_in = ?delay, "engine unreachable; retrying");
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => continue,
            }
        }
        let since = cursor.since(opened);
        opened = Some(SystemTime::now());
        let stream = ctx
            .engine
            .events(&["service", "node", "network", "config", "secret"], since);
        tokio::pin!(stream);
        if failed {
            ctx.note_reconnect();
            tracing::info!("event stream reconnected; re-listing");
            let _ = tx.send(Trigger::Reconnected).await;
            failed = false;
        }
        let rotate_at = tokio::time::Instant::now() + ROTATE;
        let end = loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(rotate_at) => break End::Rotate,
                item = stream.next() => match item {
                    Some(Ok(ev)) => {
                        if !cursor.first_time(&ev) {
                            continue;
                        }
                        let covered = event_nanos(&ev).is_some_and(|n| ctx.event_covered(n));
                        // Read per event: a new desired state names new objects at once.
                        let also = ctx.watched_names();
                        if let Some(what) = relevant(&ev, &ctx.stack(), &also, ctx.watches_all_services()) {
                            if covered {
                                // Read already: not sent, but the engine is busy.
                                ctx.covered_event_seen();
                                continue;
                            }
                            tracing::debug!(event = %what, "event");
                            let id = ev.actor.as_ref().and_then(|a| a.id.clone()).unwrap_or_default();
                            if tx.send(Trigger::Event { what, id }).await.is_err() {
                                return;
                            }
                        }
                    }
                    Some(Err(e)) => break End::Failed(e.to_string()),
                    None => break End::Failed("the event stream ended".to_string()),
                }
            }
        };
        match end {
            End::Rotate => backoff.reset(),
            End::Failed(why) => {
                ctx.set_engine_error(&why);
                failed = true;
                let delay = backoff.next_delay();
                tracing::warn!(error = %why, retry_in = ?delay, "event stream dropped; resubscribing");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{EventActor, EventMessageTypeEnum};

    fn ev(kind: EventMessageTypeEnum, action: &str, name: &str) -> EventMessage {
        EventMessage {
            typ: Some(kind),
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some("x".into()),
                attributes: Some([("name".to_string(), name.to_string())].into_iter().collect()),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn filters_what_is_not_ours() {
        let also = vec!["main".to_string()];
        let kibana = ev(EventMessageTypeEnum::SERVICE, "remove", "logging_kibana");
        assert_eq!(
            relevant(&kibana, "logging", &also, false).as_deref(),
            Some("service remove logging_kibana")
        );
        let other = ev(EventMessageTypeEnum::SERVICE, "update", "other_web");
        assert!(relevant(&other, "logging", &also, false).is_none());
        assert!(relevant(&other, "logging", &also, true).is_some());
        assert!(relevant(
            &ev(EventMessageTypeEnum::NETWORK, "remove", "main"),
            "logging",
            &also,
            false
        )
        .is_some());
        assert!(relevant(
            &ev(EventMessageTypeEnum::NODE, "update", "logger-2"),
            "logging",
            &also,
            false
        )
        .is_some());
        let container = ev(EventMessageTypeEnum::CONTAINER, "start", "logging_kibana.1");
        assert!(relevant(&container, "logging", &also, true).is_none());
    }

    #[test]
    fn replayed_events_are_dropped_and_the_cursor_follows_the_engine() {
        let mut c = Cursor::default();
        let opened = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        // Before any event: from a little before the last subscription opened.
        assert_eq!(c.since(None), None);
        assert_eq!(c.since(Some(opened)).as_deref(), Some("998.000000000"));
        let mut a = ev(EventMessageTypeEnum::SERVICE, "remove", "logging_kibana");
        a.time_nano = Some(1_700_000_000_123_456_789);
        assert!(c.first_time(&a));
        assert!(!c.first_time(&a), "a replay of the same event");
        // After one: from that event, in the engine's clock.
        assert_eq!(c.since(Some(opened)).as_deref(), Some("1700000000.123456789"));
        let mut b = a.clone();
        b.action = Some("create".into());
        assert!(c.first_time(&b), "another event at the same instant");
        // The memory is bounded: the oldest key is forgotten.
        for i in 0..SEEN as i64 {
            let mut e = a.clone();
            e.time_nano = Some(1_800_000_000_000_000_000 + i);
            assert!(c.first_time(&e));
        }
        assert!(c.seen.len() <= SEEN && c.order.len() <= SEEN);
        assert!(c.first_time(&a), "forgotten after {SEEN} newer events");
    }
}
