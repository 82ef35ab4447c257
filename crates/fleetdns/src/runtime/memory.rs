//! Giving freed memory back to the kernel. glibc keeps what a thread freed in that thread's
//! arena, resident, until something trims it. Work that allocates a whole fleet's or cluster's
//! worth and frees it again (the etcd snapshot loaded again after etcd came back, a cluster
//! written again as a whole generation on a new lease) would otherwise leave the process that
//! much bigger for good: the soak measured a step of +20–28% in every process at each etcd
//! restart, and a `malloc_trim` took most of it back.
//!
//! A trim walks the whole heap (hundreds of milliseconds on a fragmented gigabyte), so it is
//! not done on a timer: [`spawn_trimmer`] trims once after each such burst of whole work has
//! ended ([`Settled`]). `serve` also trims after every whole table compile
//! (`runtime::compile`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fleetdns_etcd::EtcdStatus;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often the trimmer looks at the counters.
const LOOK: Duration = Duration::from_secs(1);

/// How long whole work must have stopped before the trim: a restart of etcd is followed by a
/// load and by one generation per cluster, in some order, within a second or two.
pub const SETTLE: Duration = Duration::from_secs(3);

/// Says when a burst of whole work has ended: the count of whole pieces of work moved since
/// the last trim and has not moved for [`SETTLE`].
#[derive(Debug, Default)]
pub struct Settled {
    trimmed_at: u64,
    last: Option<(u64, Instant)>,
}

impl Settled {
    /// Notes the count seen at `now`; true when it is time to trim (then counted as done).
    pub fn observe(&mut self, count: u64, now: Instant) -> bool {
        match self.last {
            Some((seen, since)) if seen == count => {
                if count != self.trimmed_at && now.duration_since(since) >= SETTLE {
                    self.trimmed_at = count;
                    return true;
                }
            }
            _ => self.last = Some((count, now)),
        }
        false
    }
}

/// The whole pieces of work an etcd registry has done: snapshot loads and whole generations
/// written.
fn whole_work(status: &EtcdStatus) -> u64 {
    status.loads.load(Ordering::Relaxed) + status.generations.load(Ordering::Relaxed)
}

/// Trims after each burst of whole work of the etcd registry, until `cancel`. The trim runs
/// on a blocking thread: it must not hold up an async worker.
pub fn spawn_trimmer(tasks: &TaskTracker, cancel: &CancellationToken, status: Arc<EtcdStatus>) {
    let cancel = cancel.clone();
    tasks.spawn(async move {
        let mut settled = Settled::default();
        let mut every = tokio::time::interval(LOOK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = every.tick() => {}
            }
            let count = whole_work(&status);
            if !settled.observe(count, Instant::now()) {
                continue;
            }
            let started = Instant::now();
            if tokio::task::spawn_blocking(fleetdns_dns::compile_thread::release_free_memory)
                .await
                .is_err()
            {
                return;
            }
            tracing::debug!(
                whole_work = count,
                micros = started.elapsed().as_micros() as u64,
                "freed memory given back to the kernel"
            );
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_trimmed_once_after_it_settles() {
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        let mut s = Settled::default();
        assert!(!s.observe(0, at(0.0)), "no work yet");
        assert!(!s.observe(0, at(10.0)), "still none");
        assert!(!s.observe(1, at(11.0)), "a load: not settled");
        assert!(!s.observe(2, at(12.0)), "a generation follows");
        assert!(!s.observe(2, at(14.9)), "2.9 s quiet");
        assert!(s.observe(2, at(15.0)), "3 s quiet: trim");
        assert!(!s.observe(2, at(16.0)), "once");
        assert!(!s.observe(2, at(100.0)), "once");
        assert!(!s.observe(3, at(101.0)));
        assert!(s.observe(3, at(104.0)), "the next burst");
    }

    #[test]
    fn the_first_load_is_a_burst_too() {
        let t0 = Instant::now();
        let mut s = Settled::default();
        assert!(!s.observe(1, t0));
        assert!(
            s.observe(1, t0 + SETTLE),
            "what loading the fleet freed goes back"
        );
    }
}
