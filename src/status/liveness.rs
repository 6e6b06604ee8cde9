//! Status step, liveness (pure model): whether the controller loop still
//! makes progress. The loop records when a reconcile starts and how it
//! ends; `/healthz` asks [`Liveness::check`]. The resync ticker sends a
//! trigger at least every resync period, so a loop that finished no
//! reconcile within (reconcile deadline + resync + longest batch) has
//! triggers waiting that it does not serve: it is stuck. A reconcile that
//! its deadline cancelled (or whose engine calls did not answer in time)
//! did not finish: an engine that hangs turns health red, not only a dead
//! process. An engine that refuses at once does not (that is readiness).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shared by the controller loop (writes) and the HTTP API (reads).
#[derive(Debug)]
pub struct Liveness {
    /// Longest time between two finished reconciles of a healthy loop.
    bound: Duration,
    stopped: AtomicBool,
    times: Mutex<Times>,
    /// The last reconcile was cut short by a deadline: why.
    cut_short: Mutex<Option<String>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Times {
    /// The loop started, or its last reconcile finished.
    last_progress: Option<Instant>,
    /// The reconcile under way started then.
    running_since: Option<Instant>,
}

impl Liveness {
    /// `bound`: see the module's text (reconcile deadline + resync + batch).
    pub fn new(bound: Duration) -> Liveness {
        Liveness {
            bound,
            stopped: AtomicBool::new(false),
            times: Mutex::new(Times::default()),
            cut_short: Mutex::new(None),
        }
    }

    fn times(&self) -> std::sync::MutexGuard<'_, Times> {
        self.times.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The loop runs from `at` on (before it, the engine was being reached:
    /// that is readiness, not health).
    pub fn loop_started(&self, at: Instant) {
        self.times().last_progress = Some(at);
    }

    pub fn reconcile_started(&self, at: Instant) {
        self.times().running_since = Some(at);
    }

    /// A reconcile ended at `at`; `cut_short`: a deadline ended it (why),
    /// which is no progress.
    pub fn reconcile_ended(&self, at: Instant, cut_short: Option<String>) {
        let mut t = self.times();
        t.running_since = None;
        if cut_short.is_none() {
            t.last_progress = Some(at);
        }
        *self.cut_short.lock().unwrap_or_else(|e| e.into_inner()) = cut_short;
    }

    /// The loop has ended (shutdown, or every trigger sender gone).
    pub fn stopped(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// Healthy, or why not, at `now`.
    pub fn check(&self, now: Instant) -> Result<(), String> {
        if self.stopped.load(Ordering::Relaxed) {
            return Err("the controller loop stopped".to_string());
        }
        let t = *self.times();
        let Some(last) = t.last_progress else {
            return Ok(());
        };
        let quiet = now.saturating_duration_since(last);
        if quiet <= self.bound {
            return Ok(());
        }
        let cut_short = self.cut_short.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let running = t.running_since.map(|since| {
            format!(
                "a reconcile has run for {}",
                humantime::format_duration(round(now.saturating_duration_since(since)))
            )
        });
        // A retry under way does not hide why the ones before it did not finish.
        let doing = match (running, cut_short) {
            (Some(running), Some(why)) => format!("{running} (reconciles end at their deadline: {why})"),
            (Some(running), None) => running,
            (None, Some(why)) => format!("reconciles end at their deadline: {why}"),
            (None, None) => "the loop does not take its triggers".to_string(),
        };
        Err(format!(
            "no reconcile finished for {} (more than {}): {doing}",
            humantime::format_duration(round(quiet)),
            humantime::format_duration(self.bound)
        ))
    }
}

fn round(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn red_only_when_no_reconcile_finished_within_the_bound() {
        let l = Liveness::new(Duration::from_secs(60));
        let t0 = Instant::now();
        // Before the loop runs: healthy (readiness says the engine is not reached).
        assert!(l.check(t0 + Duration::from_secs(3600)).is_ok());
        l.loop_started(t0);
        assert!(l.check(t0 + Duration::from_secs(60)).is_ok());
        let why = l.check(t0 + Duration::from_secs(61)).unwrap_err();
        assert!(why.contains("the loop does not take its triggers"), "{why}");
        l.reconcile_started(t0 + Duration::from_secs(10));
        let why = l.check(t0 + Duration::from_secs(100)).unwrap_err();
        assert!(why.contains("no reconcile finished for 1m 40s"), "{why}");
        assert!(why.contains("a reconcile has run for 1m 30s"), "{why}");
        l.reconcile_ended(t0 + Duration::from_secs(100), None);
        assert!(l.check(t0 + Duration::from_secs(150)).is_ok());
        // Reconciles that a deadline cuts short are no progress.
        for s in [170, 200] {
            l.reconcile_started(t0 + Duration::from_secs(s - 5));
            l.reconcile_ended(
                t0 + Duration::from_secs(s),
                Some("list services: no complete answer".into()),
            );
        }
        assert!(l.check(t0 + Duration::from_secs(160)).is_ok());
        let why = l.check(t0 + Duration::from_secs(201)).unwrap_err();
        assert!(why.contains("reconciles end at their deadline: list services"), "{why}");
        // A retry just started: it says so, and still why the ones before failed.
        l.reconcile_started(t0 + Duration::from_secs(201));
        let why = l.check(t0 + Duration::from_secs(201)).unwrap_err();
        assert!(
            why.ends_with(
                "a reconcile has run for 0s (reconciles end at their deadline: list services: no complete answer)"
            ),
            "{why}"
        );
        l.reconcile_ended(t0 + Duration::from_secs(202), None);
        assert!(l.check(t0 + Duration::from_secs(203)).is_ok());
        l.stopped();
        assert_eq!(
            l.check(t0 + Duration::from_secs(203)).unwrap_err(),
            "the controller loop stopped"
        );
    }
}
