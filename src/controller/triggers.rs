//! Controller triggers: everything that says "look again", coalesced.
//!
//! Every source (engine events, the resync tick, file changes, a manual
//! request, a reconnect, a retry) only sends a [`Trigger`]; the loop takes
//! them in batches. On the leading edge: a trigger that comes after quiet
//! (no reconcile finished within `debounce`) runs at once, with whatever is
//! already queued, so a lone change heals without waiting. Otherwise (the
//! loop is busy: triggers piled up while a reconcile ran) the batch closes
//! after `debounce` without a new trigger, or `max_delay` after it opened,
//! which keeps a storm to about one reconcile per `max_delay`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Why a reconcile runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Trigger {
    /// The operator started.
    Startup,
    /// An engine event (`service remove logging_kibana`) and its object's ID.
    Event { what: String, id: String },
    /// The periodic full resync.
    Resync,
    /// A values or chart file changed on disk.
    FileChange,
    /// `POST /reconcile` or another manual request.
    Manual,
    /// The event stream came back after a drop: events in between are lost.
    Reconnected,
    /// A retry after a failed reconcile.
    Retry,
    /// Writes were made or tasks are starting: look again shortly.
    Recheck,
    /// A node's Elasticsearch preflight finished.
    Preflight,
    /// Elasticsearch's health changed (read by the operator's poller).
    Elasticsearch,
    /// A standby's leadership check found this node is now the leader (or
    /// could not tell): a full look.
    Leadership,
}

impl Trigger {
    /// A static name, for metrics and status.
    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::Event { .. } => "event",
            Trigger::Resync => "resync",
            Trigger::FileChange => "file-change",
            Trigger::Manual => "manual",
            Trigger::Reconnected => "reconnected",
            Trigger::Retry => "retry",
            Trigger::Recheck => "recheck",
            Trigger::Preflight => "preflight",
            Trigger::Elasticsearch => "elasticsearch",
            Trigger::Leadership => "leadership",
        }
    }
}

/// What a batch may have changed outside the stack's services.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outside {
    /// Anything (startup, resync, a reconnect after lost events, a file
    /// change, a new leader's first look): every service is worth a look.
    pub every: bool,
    /// IDs of the services outside the stack that the batch's events name.
    pub services: Vec<String>,
    /// Only events and rechecks: the hot path (a heal, a join), where the
    /// engine's `/info` is not read again.
    pub quick: bool,
    /// The kinds of object other than services (read on every reconcile)
    /// that the batch's events name; on the hot path, the others are taken
    /// from the last reconcile's observation.
    pub named: crate::engine::Kinds,
}

/// What of the services outside `stack` a batch may have changed. Retries,
/// rechecks, manual reconciles and node events change nothing there.
pub fn outside_stack(batch: &[Trigger], stack: &str) -> Outside {
    let prefix = format!("{stack}_");
    let mut out = Outside {
        quick: !batch.is_empty()
            && batch.iter().all(|t| {
                matches!(
                    t,
                    Trigger::Event { .. } | Trigger::Recheck | Trigger::Preflight | Trigger::Elasticsearch
                )
            }),
        ..Default::default()
    };
    for t in batch {
        match t {
            Trigger::Event { what, id } => {
                let mut words = what.split(' ');
                let kind = words.next();
                out.named.add(kind.unwrap_or_default());
                if kind == Some("service") {
                    let name = words.nth(1).unwrap_or_default();
                    if !id.is_empty() && !name.starts_with(&prefix) && !out.services.contains(id) {
                        out.services.push(id.clone());
                    }
                }
            }
            Trigger::Retry | Trigger::Recheck | Trigger::Preflight | Trigger::Elasticsearch | Trigger::Manual => {}
            Trigger::Startup | Trigger::Resync | Trigger::FileChange | Trigger::Reconnected | Trigger::Leadership => {
                out.every = true
            }
        }
    }
    out
}

/// Most distinct triggers one batch keeps (an event storm of unrelated
/// services stays cheap: constant memory, constant work per event).
pub const MAX_BATCH: usize = 256;

/// Most triggers a batch names in the status and the log; the rest are counted.
pub const DESCRIBED: usize = 8;

/// A batch in words, deduplicated and bounded: `service remove x, resync
/// (+3 more)`.
pub fn describe(batch: &[Trigger]) -> String {
    let mut seen = std::collections::BTreeSet::new();
    let mut names = Vec::new();
    for t in batch {
        let name = match t {
            Trigger::Event { what, .. } => what.as_str(),
            other => other.kind(),
        };
        if seen.insert(name) && names.len() < DESCRIBED {
            names.push(name);
        }
    }
    let mut out = names.join(", ");
    if seen.len() > names.len() {
        out.push_str(&format!(" (+{} more)", seen.len() - names.len()));
    }
    out
}

/// Waits for the next batch of triggers; `last_done`: when the last
/// reconcile finished; `busy`: when an event last came that an observe had
/// already read (dropped, not sent: the engine is busy all the same).
/// `None` once every sender is gone.
pub async fn next_batch(
    rx: &mut mpsc::Receiver<Trigger>,
    debounce: Duration,
    max_delay: Duration,
    last_done: Instant,
    busy: &dyn Fn() -> Option<Instant>,
) -> Option<Vec<Trigger>> {
    let first = rx.recv().await?;
    let opened = Instant::now();
    let mut seen = std::collections::HashSet::from([first.clone()]);
    let mut batch = vec![first];
    // Quiet means no event at all, not only none sent: each reconcile's
    // observe covers the events still on their way, which are dropped, so
    // under a steady stream the first one sent after a reconcile always
    // came after a gap. Taken for quiet, that gap made every reconcile a
    // leading edge (a stream of 1,000 unrelated events a second ran one
    // reconcile after another, about 10 a second, not one per `max_delay`).
    let quiet_since = busy().map_or(last_done, |b| b.max(last_done));
    if opened.saturating_duration_since(quiet_since) >= debounce {
        // The leading edge: at once, with what is already there.
        while let Ok(t) = rx.try_recv() {
            if batch.len() < MAX_BATCH && seen.insert(t.clone()) {
                batch.push(t);
            }
        }
        return Some(batch);
    }
    // The batch closes after `debounce` with no event, sent or dropped.
    let mut last = opened;
    loop {
        let quiet = busy().map_or(last, |b| b.max(last)) + debounce;
        let until = quiet.min(opened + max_delay);
        match tokio::time::timeout_at(until, rx.recv()).await {
            // A reconcile looks at everything anyway: beyond MAX_BATCH
            // distinct triggers, more only say "look again" once more.
            Ok(Some(t)) => {
                last = Instant::now();
                if batch.len() < MAX_BATCH && seen.insert(t.clone()) {
                    batch.push(t);
                }
            }
            Ok(None) => return Some(batch),
            // Quiet, unless an event was dropped meanwhile.
            Err(_) if busy().is_some_and(|b| b + debounce > Instant::now()) => {}
            Err(_) => return Some(batch),
        }
        if Instant::now() >= opened + max_delay {
            return Some(batch);
        }
    }
}

/// Exponential backoff with jitter, capped; `reset` after a success.
pub struct Backoff {
    builder: ExponentialBuilder,
    current: ExponentialBackoff,
    max: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        let builder = ExponentialBuilder::default()
            .with_min_delay(min)
            .with_max_delay(max)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        Backoff {
            current: builder.build(),
            builder,
            max,
        }
    }

    /// The next delay (never more than twice the cap, jitter included).
    pub fn next_delay(&mut self) -> Duration {
        self.current.next().unwrap_or(self.max)
    }

    pub fn reset(&mut self) {
        self.current = self.builder.build();
    }
}

/// Sends [`Trigger::Resync`] every `period` (not at start).
pub async fn resync_ticker(period: Duration, tx: mpsc::Sender<Trigger>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval_at(Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                if tx.send(Trigger::Resync).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// What identifies a file's content for change detection.
fn fingerprint(paths: &[PathBuf]) -> Vec<(PathBuf, Option<(SystemTime, u64)>)> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = paths.to_vec();
    while let Some(p) = stack.pop() {
        match std::fs::metadata(&p) {
            Ok(m) if m.is_dir() => {
                if let Ok(entries) = std::fs::read_dir(&p) {
                    stack.extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
                }
            }
            Ok(m) => out.push((p, Some((m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len())))),
            Err(_) => out.push((p, None)),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A file as it was when last looked at: modified time and length (`None`:
/// not there).
pub type Stat = Option<(SystemTime, u64)>;

/// A state no file has: what a file counts as when the render's read of it
/// is not known to be its content now.
pub const UNSEEN: Stat = Some((SystemTime::UNIX_EPOCH, u64::MAX));

pub fn stat(path: &std::path::Path) -> Stat {
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
}

/// The files the desired state in force was rendered from (a config's
/// `file:` outside the chart directory, such as `shipper.configFile:
/// /etc/swarmlog/files/filebeat.yml`), as they were when the render read
/// them. Set after each good render, read by [`watch_files`].
pub type RenderedFrom = std::sync::Arc<std::sync::RwLock<Vec<(PathBuf, Stat)>>>;

/// Polls the values and chart files, and the files the last good render read
/// ([`RenderedFrom`]), every `interval`; sends [`Trigger::FileChange`] when
/// any changed (polling works on every filesystem, including swarm configs
/// and bind mounts). A rendered-from file counts as changed when it differs
/// from what the render read, once per new state (a render that fails on it
/// does not make it trigger again and again).
pub async fn watch_files(
    paths: Vec<PathBuf>,
    rendered_from: RenderedFrom,
    interval: Duration,
    tx: mpsc::Sender<Trigger>,
    shutdown: CancellationToken,
) {
    let mut last = fingerprint(&paths);
    let mut reported: BTreeMap<PathBuf, Stat> = BTreeMap::new();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                let now = fingerprint(&paths);
                let mut changed = now != last;
                last = now;
                let from = rendered_from.read().map(|f| f.clone()).unwrap_or_default();
                for (path, read) in from {
                    let current = stat(&path);
                    if current != read && reported.get(&path) != Some(&current) {
                        reported.insert(path, current);
                        changed = true;
                    }
                }
                if changed && tx.send(Trigger::FileChange).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_that_may_change_services_outside_the_stack() {
        let ev = |what: &str| Trigger::Event {
            what: what.into(),
            id: format!("id-{}", what.rsplit(' ').next().unwrap_or_default()),
        };
        let hot = Outside {
            quick: true,
            ..Default::default()
        };
        assert_eq!(outside_stack(&[ev("service update logging_kibana")], "logging"), hot);
        let config = outside_stack(&[ev("config create proxy_cfg"), Trigger::Recheck], "logging");
        assert!(config.quick && config.services.is_empty() && !config.every);
        assert!(config.named.configs && !config.named.networks && !config.named.secrets);
        let kinds = outside_stack(
            &[
                ev("network remove main"),
                ev("secret create logging_s"),
                ev("node update n1"),
            ],
            "logging",
        )
        .named;
        assert!(kinds.networks && kinds.secrets && !kinds.configs);
        let quiet = [ev("node update n1"), Trigger::Retry, Trigger::Recheck, Trigger::Manual];
        assert_eq!(
            outside_stack(&quiet, "logging"),
            Outside::default(),
            "a retry reads /info"
        );
        let named = outside_stack(
            &[
                ev("service create proxy_le"),
                ev("service update loggingx_web"),
                ev("service update proxy_le"),
            ],
            "logging",
        );
        assert_eq!(named.services, ["id-proxy_le", "id-loggingx_web"]);
        assert!(!named.every);
        for t in [
            Trigger::Startup,
            Trigger::Resync,
            Trigger::Reconnected,
            Trigger::FileChange,
            Trigger::Leadership,
        ] {
            assert!(outside_stack(&[t], "logging").every);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_one_batch() {
        let (tx, mut rx) = mpsc::channel(16);
        let sender = tokio::spawn(async move {
            for i in 0..5 {
                tx.send(Trigger::Event {
                    what: format!("e{i}"),
                    id: String::new(),
                })
                .await
                .unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            tx.send(Trigger::Resync).await.unwrap();
        });
        let start = Instant::now();
        let batch = next_batch(
            &mut rx,
            Duration::from_millis(20),
            Duration::from_secs(1),
            Instant::now(),
            &|| None,
        )
        .await
        .unwrap();
        assert_eq!(batch.len(), 5);
        // Closed 20 ms after the last of the burst (at 20 ms).
        assert_eq!(start.elapsed(), Duration::from_millis(40));
        let batch = next_batch(
            &mut rx,
            Duration::from_millis(20),
            Duration::from_secs(1),
            Instant::now(),
            &|| None,
        )
        .await
        .unwrap();
        assert_eq!(batch, vec![Trigger::Resync]);
        sender.await.unwrap();
        assert!(next_batch(
            &mut rx,
            Duration::from_millis(20),
            Duration::from_secs(1),
            Instant::now(),
            &|| None,
        )
        .await
        .is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn after_quiet_the_first_trigger_runs_at_once() {
        let (tx, mut rx) = mpsc::channel(16);
        let done = Instant::now();
        tokio::time::sleep(Duration::from_millis(500)).await;
        tx.send(Trigger::Event {
            what: "service remove x".into(),
            id: String::new(),
        })
        .await
        .unwrap();
        tx.send(Trigger::Resync).await.unwrap();
        let start = Instant::now();
        let batch = next_batch(
            &mut rx,
            Duration::from_millis(20),
            Duration::from_secs(1),
            done,
            &|| None,
        )
        .await
        .unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO, "no debounce after quiet");
        assert_eq!(batch.len(), 2, "what was queued comes along: {batch:?}");
        // Right after that reconcile: the next trigger waits for the burst to end.
        let done = Instant::now();
        tx.send(Trigger::Event {
            what: "service create x".into(),
            id: String::new(),
        })
        .await
        .unwrap();
        let batch = next_batch(
            &mut rx,
            Duration::from_millis(20),
            Duration::from_secs(1),
            done,
            &|| None,
        )
        .await
        .unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(start.elapsed(), Duration::from_millis(20), "trailing edge while busy");
    }

    /// Events an observe already read are dropped, not sent; they still
    /// say the engine is busy: the first event sent after them is no
    /// leading edge (under a steady stream every reconcile would be one).
    #[tokio::test(start_paused = true)]
    async fn events_dropped_as_read_are_no_quiet() {
        let (tx, mut rx) = mpsc::channel(16);
        let done = Instant::now();
        tokio::time::sleep(Duration::from_millis(500)).await;
        // The last dropped event came 5 ms ago.
        let dropped = Instant::now() - Duration::from_millis(5);
        let ev = |what: &str| Trigger::Event {
            what: what.into(),
            id: String::new(),
        };
        tx.send(ev("service update other_1")).await.unwrap();
        let start = Instant::now();
        let batch = next_batch(
            &mut rx,
            Duration::from_millis(20),
            Duration::from_secs(1),
            done,
            &|| Some(dropped),
        )
        .await
        .unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(start.elapsed(), Duration::from_millis(20), "waits for quiet");
        // The same with the last dropped event long ago: at once.
        let dropped = Instant::now() - Duration::from_millis(300);
        tx.send(ev("service update other_2")).await.unwrap();
        let start = Instant::now();
        next_batch(
            &mut rx,
            Duration::from_millis(20),
            Duration::from_secs(1),
            done,
            &|| Some(dropped),
        )
        .await
        .unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO);
        // A steady stream, 10 events every 10 ms; after each reconcile the
        // events of the next 40 ms were read by its observe already and are
        // dropped. One batch per `max_delay`, not one per reconcile.
        let batches = |with_busy: bool| async move {
            let (tx, mut rx) = mpsc::channel(64);
            let seen = std::sync::Arc::new(std::sync::Mutex::new(None::<Instant>));
            let covered = std::sync::Arc::new(std::sync::Mutex::new(Instant::now()));
            let feeder = {
                let (seen, covered) = (seen.clone(), covered.clone());
                tokio::spawn(async move {
                    for i in 0..1_000u32 {
                        let read = Instant::now() < *covered.lock().unwrap();
                        for j in 0..10 {
                            if read {
                                *seen.lock().unwrap() = Some(Instant::now());
                            } else if tx.send(ev(&format!("service update other_{i}_{j}"))).await.is_err() {
                                return;
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                })
            };
            let start = Instant::now();
            let mut n = 0;
            let mut done = Instant::now();
            while start.elapsed() < Duration::from_secs(2) {
                let s = seen.clone();
                let busy = move || if with_busy { *s.lock().unwrap() } else { None };
                next_batch(
                    &mut rx,
                    Duration::from_millis(20),
                    Duration::from_millis(500),
                    done,
                    &busy,
                )
                .await
                .unwrap();
                n += 1;
                tokio::time::sleep(Duration::from_millis(15)).await; // the reconcile
                done = Instant::now();
                *covered.lock().unwrap() = done + Duration::from_millis(40);
            }
            feeder.abort();
            n
        };
        let n = batches(true).await;
        assert!((3..=5).contains(&n), "{n} batches in 2 s at max 500 ms");
        // Without what was dropped, every gap read as quiet.
        let blind = batches(false).await;
        assert!(blind > 20, "{blind}: the stream's gaps after each reconcile look quiet");
    }

    #[tokio::test(start_paused = true)]
    async fn a_storm_is_bounded_and_described_briefly() {
        let (tx, mut rx) = mpsc::channel(20_000);
        for i in 0..10_000 {
            tx.send(Trigger::Event {
                what: format!("service update other_{i}"),
                id: String::new(),
            })
            .await
            .unwrap();
            tx.send(Trigger::Resync).await.unwrap();
        }
        let batch = next_batch(
            &mut rx,
            Duration::from_millis(20),
            Duration::from_secs(1),
            Instant::now(),
            &|| None,
        )
        .await
        .unwrap();
        assert_eq!(batch.len(), MAX_BATCH);
        assert_eq!(batch.iter().filter(|t| **t == Trigger::Resync).count(), 1);
        let text = describe(&batch);
        assert!(text.ends_with(&format!("(+{} more)", MAX_BATCH - DESCRIBED)), "{text}");
        assert!(text.len() < 400, "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_stream_is_cut_at_max_delay() {
        let (tx, mut rx) = mpsc::channel(16);
        tokio::spawn(async move {
            loop {
                if tx.send(Trigger::Resync).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        let start = Instant::now();
        let batch = next_batch(
            &mut rx,
            Duration::from_millis(20),
            Duration::from_millis(200),
            Instant::now(),
            &|| None,
        )
        .await
        .unwrap();
        assert_eq!(batch, vec![Trigger::Resync], "identical triggers are one");
        assert!(start.elapsed() >= Duration::from_millis(200) && start.elapsed() <= Duration::from_millis(210));
    }

    #[test]
    fn backoff_grows_is_capped_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let delays: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(100) && delays[0] <= Duration::from_millis(200));
        assert!(delays[3] >= Duration::from_millis(800), "{delays:?}");
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(4)), "{delays:?}");
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(200));
    }

    #[tokio::test(start_paused = true)]
    async fn resync_ticks_on_period() {
        let (tx, mut rx) = mpsc::channel(4);
        let stop = CancellationToken::new();
        tokio::spawn(resync_ticker(Duration::from_secs(300), tx, stop.clone()));
        let start = Instant::now();
        assert_eq!(rx.recv().await, Some(Trigger::Resync));
        assert_eq!(start.elapsed(), Duration::from_secs(300));
        stop.cancel();
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn file_changes_trigger() {
        let dir = std::env::temp_dir().join(format!("swarmlog-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("values.yaml");
        std::fs::write(&file, "a: 1\n").unwrap();
        let (tx, mut rx) = mpsc::channel(4);
        let stop = CancellationToken::new();
        tokio::spawn(watch_files(
            vec![file.clone()],
            RenderedFrom::default(),
            Duration::from_millis(20),
            tx,
            stop.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(60)).await;
        std::fs::write(&file, "a: 22\n").unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap();
        assert_eq!(got, Some(Trigger::FileChange));
        stop.cancel();
    }

    #[tokio::test]
    async fn an_edit_of_a_file_the_render_read_triggers_once() {
        let dir = std::env::temp_dir().join(format!("swarmlog-watch-from-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (read, unknown) = (dir.join("filebeat.yml"), dir.join("pipeline.conf"));
        std::fs::write(&read, "a: 1\n").unwrap();
        std::fs::write(&unknown, "input {}\n").unwrap();
        let from = RenderedFrom::default();
        from.write().unwrap().push((read.clone(), stat(&read)));
        let (tx, mut rx) = mpsc::channel(4);
        let stop = CancellationToken::new();
        tokio::spawn(watch_files(
            Vec::new(),
            from.clone(),
            Duration::from_millis(20),
            tx,
            stop.clone(),
        ));
        // Unchanged: nothing.
        let quiet = tokio::time::timeout(Duration::from_millis(150), rx.recv()).await;
        assert!(quiet.is_err(), "{quiet:?}");
        std::fs::write(&read, "a: 22\n").unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap();
        assert_eq!(got, Some(Trigger::FileChange));
        // Not again for the same state (a render that fails on it, say).
        let quiet = tokio::time::timeout(Duration::from_millis(150), rx.recv()).await;
        assert!(quiet.is_err(), "{quiet:?}");
        // A file the render read but whose content it could not confirm:
        // it triggers a render.
        from.write().unwrap().push((unknown.clone(), UNSEEN));
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap();
        assert_eq!(got, Some(Trigger::FileChange));
        stop.cancel();
    }
}
