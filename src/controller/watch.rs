//! Controller watch: the engine's event stream as triggers, resubscribed with
//! backoff when it drops (an idle stream never times out; a dropped one ends
//! with one I/O error). After every reconnect a full re-list is triggered,
//! since the events in between are lost.

use std::sync::Arc;
use std::time::Duration;

use bollard::models::EventMessage;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::triggers::{Backoff, Trigger};
use super::Context;

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

/// Runs until shutdown: subscribes, forwards relevant events, resubscribes.
pub async fn watch_events(ctx: Arc<Context>, tx: mpsc::Sender<Trigger>, shutdown: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    let mut connected_before = false;
    loop {
        if let Err(e) = ctx.engine.ping().await {
            let msg = e.to_string();
            ctx.set_engine_error(&msg);
            let delay = backoff.next_delay();
            tracing::warn!(error = %msg, retry_in = ?delay, "engine unreachable; retrying");
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => continue,
            }
        }
        let stream = ctx.engine.events(&["service", "node", "network", "config", "secret"]);
        tokio::pin!(stream);
        if connected_before {
            ctx.note_reconnect();
            tracing::info!("event stream reconnected; re-listing");
            let _ = tx.send(Trigger::Reconnected).await;
        }
        connected_before = true;
        backoff.reset();
        let also = ctx.watched_names();
        let end = loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                item = stream.next() => match item {
                    Some(Ok(ev)) => {
                        if let Some(what) = relevant(&ev, &ctx.stack(), &also, ctx.watches_all_services()) {
                            tracing::debug!(event = %what, "event");
                            if tx.send(Trigger::Event { what }).await.is_err() {
                                return;
                            }
                        }
                    }
                    Some(Err(e)) => break e.to_string(),
                    None => break "the event stream ended".to_string(),
                }
            }
        };
        ctx.set_engine_error(&end);
        let delay = backoff.next_delay();
        tracing::warn!(error = %end, retry_in = ?delay, "event stream dropped; resubscribing");
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
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
}
