//! Whether one cluster's API server answers, and how its watchers retry.
//!
//! Only an answer counts as reachability: kube-runtime's `Event::Init` comes before any
//! request is sent, so it proves nothing. An outage is logged once, when `connected` turns
//! false, and ends with the first answer (a watch event, an HTTP status, or the probe that
//! runs every [`PROBE_INTERVAL`] while the server is down). That first answer wakes every
//! watcher sleeping in its backoff, and the writer waiting to retry a failed write, so after
//! an outage of any length the watchers re-list and the writer writes at once instead of
//! waiting out a backoff grown during the outage. A 410 Gone is the
//! server asking for a re-list, not a failure: the watcher re-lists without waiting.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::stream::{BoxStream, Stream, StreamExt};
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::local::SourceStatus;
use crate::resources;

/// How often a server that stopped answering is asked again (one small list).
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// The first retry delay after a failure; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

type WatchItem = Result<Event<DynamicObject>, watcher::Error>;

/// What a failed list or watch says about the API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// 410 Gone: the resourceVersion is too old; re-list now.
    Expired,
    /// The server answered with this status (403 from RBAC, 500, ...).
    Refused(u16),
    /// No answer: connection refused or dropped, timeout.
    Unanswered,
}

pub(crate) fn classify(e: &watcher::Error) -> Failure {
    let code = match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => Some(s.code),
        watcher::Error::WatchError(s) => Some(s.code),
        // An answer without a resourceVersion is still an answer.
        watcher::Error::NoResourceVersion => Some(200),
        _ => None,
    };
    match code {
        Some(410) => Failure::Expired,
        Some(code) => Failure::Refused(code),
        None => Failure::Unanswered,
    }
}

/// Retry delays of one watcher: doubling from [`FIRST_BACKOFF`] to [`MAX_BACKOFF`] with
/// jitter (half to all of the step), none after a 410, back to the start on any answer.
#[derive(Debug)]
pub(crate) struct Backoff {
    step: Duration,
    /// A 410 came last, with no answer since: another one waits like any failure (a server
    /// answering every watch with 410 must not be asked in a tight loop).
    expired: bool,
    jitter: RandomState,
    draws: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            step: FIRST_BACKOFF,
            expired: false,
            jitter: RandomState::new(),
            draws: 0,
        }
    }
}

impl Backoff {
    pub(crate) fn reset(&mut self) {
        self.step = FIRST_BACKOFF;
        self.expired = false;
    }

    /// The delay before retrying after `failure`.
    pub(crate) fn after(&mut self, failure: Failure) -> Duration {
        let expired = std::mem::replace(&mut self.expired, failure == Failure::Expired);
        if failure == Failure::Expired && !expired {
            return Duration::ZERO;
        }
        let step = self.step;
        self.step = (step * 2).min(MAX_BACKOFF);
        self.draws += 1;
        let fraction = (self.jitter.hash_one(self.draws) % 1024) as u32;
        step / 2 + (step / 2) * fraction / 1024
    }
}

/// One cluster's reachability, shared by its watchers and its probe.
pub(crate) struct Reachability {
    status: Arc<SourceStatus>,
    /// Bumped each time the server answers again after an outage.
    wake: watch::Sender<u64>,
}

impl Reachability {
    pub(crate) fn new(status: Arc<SourceStatus>) -> Self {
        Self {
            status,
            wake: watch::Sender::new(0),
        }
    }

    /// The API server answered: the outage, if any, is over; sleeping watchers retry now.
    pub(crate) fn answered(&self) {
        if !self.status.connected.swap(true, Ordering::Relaxed) {
            tracing::info!(cluster = %self.status.cluster, "cluster API reachable");
            self.wake.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Changes each time the server answers again after an outage: what a retry waiting out
    /// a backoff (a watcher's, the writer's) listens to, to retry at once.
    pub(crate) fn answered_again(&self) -> watch::Receiver<u64> {
        self.wake.subscribe()
    }

    /// A watched event: anything but `Init` (sent before any request) is an answer.
    pub(crate) fn event(&self, event: &Event<DynamicObject>) {
        if !matches!(event, Event::Init) {
            self.answered();
        }
    }

    /// A failed list or watch of `kind`; logs an outage once, when it begins.
    pub(crate) fn failed(&self, kind: &dyn std::fmt::Debug, e: &watcher::Error) {
        self.status.watch_errors.fetch_add(1, Ordering::Relaxed);
        let cluster = &self.status.cluster;
        match classify(e) {
            Failure::Expired => {
                self.answered();
                tracing::debug!(cluster = %cluster, kind = ?kind, "watch expired; re-listing");
            }
            // The API server answered (403 from RBAC, say): reachable, but this kind is not.
            Failure::Refused(code) => {
                self.answered();
                tracing::warn!(cluster = %cluster, kind = ?kind, code, error = %e, "the API server refused a list or watch; retrying");
            }
            Failure::Unanswered => {
                if self.status.connected.swap(false, Ordering::Relaxed) {
                    self.status.outages.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(cluster = %cluster, kind = ?kind, error = %e, "cluster API unreachable; serving its last known exports");
                } else {
                    tracing::debug!(cluster = %cluster, kind = ?kind, error = %e, "watch failed");
                }
            }
        }
    }

    /// A watcher stream with fleetdns's retry policy (instead of kube-runtime's
    /// `default_backoff`, which treats `Init` as success and 410 as a failure): each error is
    /// followed by a [`Backoff`] delay, cut short when the server answers again.
    pub(crate) fn retrying(
        &self,
        stream: impl Stream<Item = WatchItem> + Send + 'static,
    ) -> BoxStream<'static, WatchItem> {
        struct Retrying<S> {
            inner: std::pin::Pin<Box<S>>,
            backoff: Backoff,
            wait: Option<Duration>,
            wake: watch::Receiver<u64>,
        }
        let state = Retrying {
            inner: Box::pin(stream),
            backoff: Backoff::default(),
            wait: None,
            wake: self.answered_again(),
        };
        futures::stream::unfold(state, |mut st| async move {
            if let Some(wait) = st.wait.take() {
                let woken = async {
                    if st.wake.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = woken => st.backoff.reset(),
                }
            }
            let item = st.inner.next().await?;
            match &item {
                Ok(Event::Init) => {}
                Ok(_) => st.backoff.reset(),
                Err(e) => {
                    // A wake from now on ends the coming wait.
                    st.wake.borrow_and_update();
                    st.wait = Some(st.backoff.after(classify(e)));
                }
            }
            Some((item, st))
        })
        .boxed()
    }

    /// Until `cancel`: while the server is not answering, asks it every [`PROBE_INTERVAL`]
    /// with one small list, so the watchers are woken as soon as it answers again.
    pub(crate) async fn probe(&self, client: &Client, cancel: &CancellationToken) {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resources::services());
        let one = ListParams::default().limit(1);
        let mut tick = tokio::time::interval(PROBE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            if self.status.connected.load(Ordering::Relaxed) {
                continue;
            }
            let list = api.list_metadata(&one);
            let answered = tokio::select! {
                _ = cancel.cancelled() => return,
                r = tokio::time::timeout(PROBE_TIMEOUT, list) => match r {
                    Ok(Ok(_) | Err(kube::Error::Api(_))) => true,
                    Ok(Err(_)) | Err(_) => false,
                },
            };
            if answered {
                self.answered();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_410_is_retried_at_once_and_does_not_grow_the_backoff() {
        let mut b = Backoff::default();
        assert_eq!(b.after(Failure::Expired), Duration::ZERO);
        let first = b.after(Failure::Unanswered);
        assert!(
            first >= FIRST_BACKOFF / 2 && first <= FIRST_BACKOFF,
            "{first:?}"
        );
        assert_eq!(b.after(Failure::Expired), Duration::ZERO);
        let second = b.after(Failure::Refused(500));
        assert!(
            second >= FIRST_BACKOFF && second <= FIRST_BACKOFF * 2,
            "{second:?}"
        );
        // 410 after 410 with no answer between: waits, so it cannot spin.
        assert_eq!(b.after(Failure::Expired), Duration::ZERO);
        assert!(b.after(Failure::Expired) >= FIRST_BACKOFF);
        b.reset();
        assert_eq!(b.after(Failure::Expired), Duration::ZERO);
    }

    #[test]
    fn the_backoff_is_capped_and_starts_over_after_an_answer() {
        let mut b = Backoff::default();
        for _ in 0..20 {
            assert!(b.after(Failure::Unanswered) <= MAX_BACKOFF);
        }
        assert!(b.after(Failure::Unanswered) >= MAX_BACKOFF / 2);
        b.reset();
        assert!(b.after(Failure::Unanswered) <= FIRST_BACKOFF);
    }
}
