//! The redelivery window (DESIGN.md §5, invariant 2): a delivery identical to one recorded a
//! moment ago — the copy another Alertmanager of an HA cluster sent, a sender's retry after a
//! 503 — is answered with the outcome of the one it repeats, and is not counted again.
//!
//! For each [`Delivery`] the window remembers, for `redelivery.window` after its outcome, what
//! it was answered: the RR and the delivery's own ordinal. A repeat within that time gets the
//! same RR and ordinal as a 202 (a repeat of the delivery that created the RR: count 1), with
//! no Kubernetes call. Identical deliveries that arrive while the first is still being
//! recorded wait for its result (they share its future, so the first one's client hanging up
//! does not abandon them), at most `api.request_timeout`. Only outcomes are remembered: when
//! the first one fails, every delivery waiting on it gets the same error (503: the senders
//! retry) and the next one is recorded afresh.
//!
//! **Bounded.** At most `redelivery.max_entries` deliveries are remembered, in shards (a
//! large window) that each keep their own insertion order and an equal part of the cap; at a
//! shard's cap its oldest entry goes, in flight or not. A full window therefore degrades to counting a repeat again, never to refusing or
//! losing a delivery. Expired entries are dropped as newer ones arrive, a few at a time, so
//! memory follows the deliveries of the last `window`, up to the cap. An entry whose result
//! nobody awaited any more (its client hung up) is kept while it may still complete, so a
//! resend within the window still finds the answer.
//!
//! Time comes from the injectable [`Clock`]; the window never sleeps.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use jiff::Timestamp;

use super::outcome::{Outcome, ProcessError};
use crate::clock::Clock;
use crate::ingest::Delivery;

/// What the window is told at start-up (`redelivery.*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// How long a recorded delivery is remembered after its outcome; zero turns the window off
    /// (every delivery is recorded).
    pub window: Duration,
    /// Deliveries remembered at most.
    pub max_entries: usize,
    /// How long a repeat waits for the delivery it repeats to be recorded (`api.request_timeout`,
    /// the longest the engine takes to answer).
    pub wait: Duration,
}

/// How the window answered one delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The delivery was new: this is what recording it gave.
    Recorded(Result<Outcome, ProcessError>),
    /// It repeats a delivery recorded within the window, or one being recorded: that one's
    /// outcome, as a repeat of it ([`Outcome::Duplicate`] with its ordinal), or its error.
    Repeat(Result<Outcome, ProcessError>),
}

impl Answer {
    /// The outcome, whichever way it came.
    pub fn into_result(self) -> Result<Outcome, ProcessError> {
        match self {
            Answer::Recorded(result) | Answer::Repeat(result) => result,
        }
    }
}

/// The result of recording one delivery, shared by every identical delivery that arrives while
/// it is being recorded.
type InFlight = Shared<BoxFuture<'static, Result<Outcome, ProcessError>>>;

/// What [`Window::look_up`] found.
enum Lookup {
    /// A recorded delivery: its answer.
    Recorded(Outcome),
    /// One being recorded: wait for it.
    Join {
        seq: u64,
        arrived_ms: i64,
        in_flight: InFlight,
    },
    /// Nothing: this delivery is recorded, under `seq`.
    Lead { seq: u64, in_flight: InFlight },
}

/// Shards of a large window: enough that requests on different cores rarely meet on one lock.
const SHARDS: usize = 16;
/// Below this many entries per shard a window keeps one shard, so that a small cap and its
/// order are exact.
const MIN_PER_SHARD: usize = 1024;

/// The redelivery window.
pub struct Window {
    settings: Settings,
    shards: Box<[Mutex<Shard>]>,
    /// Entries (and insertion-order slots) each shard holds at most.
    per_shard: usize,
    clock: Arc<dyn Clock>,
    /// Tells an entry from a later one under the same digest.
    next_seq: AtomicU64,
    /// `gateway_redelivery_window_entries`.
    entries: metrics::Gauge,
}

#[derive(Default)]
struct Shard {
    entries: HashMap<Delivery, Entry, ahash::RandomState>,
    /// Digests in insertion order, with the sequence number of the entry each was inserted for
    /// (an entry replaced since then leaves a stale slot, skipped when it comes up).
    order: VecDeque<(Delivery, u64)>,
}

struct Entry {
    seq: u64,
    /// When the first delivery arrived (unix ms): a repeat of the delivery that created the RR
    /// reports it as the occurrence time.
    arrived_ms: i64,
    /// Until when (unix ms) the entry answers repeats: `window` after its outcome; while in
    /// flight, the longest the recording may take plus `window`, after which nothing can be
    /// waiting on it any more.
    expires_ms: i64,
    state: State,
}

enum State {
    /// Being recorded.
    InFlight(InFlight),
    /// Recorded: the answer a repeat gets.
    Recorded(Outcome),
}

impl Window {
    /// An empty window.
    pub fn new(settings: Settings, clock: Arc<dyn Clock>, entries: metrics::Gauge) -> Self {
        let shards = if settings.max_entries >= SHARDS * MIN_PER_SHARD {
            SHARDS
        } else {
            1
        };
        Window {
            settings,
            shards: (0..shards).map(|_| Mutex::default()).collect(),
            per_shard: (settings.max_entries / shards).max(1),
            clock,
            next_seq: AtomicU64::new(0),
            entries,
        }
    }

    /// Whether deliveries are remembered at all (`redelivery.window` is not zero).
    pub fn is_enabled(&self) -> bool {
        !self.settings.window.is_zero() && self.settings.max_entries > 0
    }

    /// Deliveries remembered now, in flight or recorded (expired ones not yet dropped
    /// included).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).entries.len()).sum()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Answers `delivery`: from the window when it repeats one recorded or being recorded,
    /// else by awaiting `record` (which is then remembered if it succeeds).
    pub async fn answer<F>(&self, delivery: Delivery, record: F) -> Answer
    where
        F: Future<Output = Result<Outcome, ProcessError>> + Send + 'static,
    {
        if !self.is_enabled() {
            return Answer::Recorded(record.await);
        }
        match self.look_up(delivery, record) {
            Lookup::Recorded(outcome) => Answer::Repeat(Ok(outcome)),
            Lookup::Join {
                seq,
                arrived_ms,
                in_flight,
            } => Answer::Repeat(self.join(delivery, seq, arrived_ms, in_flight).await),
            Lookup::Lead { seq, in_flight } => {
                let result = in_flight.await;
                self.settle(delivery, seq, &result);
                Answer::Recorded(result)
            }
        }
    }

    /// What the window holds for `delivery`; when nothing (live), `record` becomes its entry.
    fn look_up<F>(&self, delivery: Delivery, record: F) -> Lookup
    where
        F: Future<Output = Result<Outcome, ProcessError>> + Send + 'static,
    {
        let now_ms = self.now_ms();
        let mut shard = lock(&self.shards[self.shard_of(&delivery)]);
        self.drop_expired(&mut shard, now_ms);
        if let Some(entry) = shard.entries.get(&delivery)
            && entry.expires_ms > now_ms
        {
            return match &entry.state {
                State::Recorded(outcome) => Lookup::Recorded(outcome.clone()),
                State::InFlight(in_flight) => Lookup::Join {
                    seq: entry.seq,
                    arrived_ms: entry.arrived_ms,
                    in_flight: in_flight.clone(),
                },
            };
        }
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let in_flight = record.boxed().shared();
        let entry = Entry {
            seq,
            arrived_ms: now_ms,
            expires_ms: now_ms.saturating_add(millis(self.settings.wait + self.settings.window)),
            state: State::InFlight(in_flight.clone()),
        };
        self.insert(&mut shard, delivery, entry);
        Lookup::Lead { seq, in_flight }
    }

    /// Waits for the delivery being recorded under `seq`, at most `wait`.
    async fn join(
        &self,
        delivery: Delivery,
        seq: u64,
        arrived_ms: i64,
        in_flight: InFlight,
    ) -> Result<Outcome, ProcessError> {
        let Ok(result) = tokio::time::timeout(self.settings.wait, in_flight).await else {
            return Err(ProcessError::Unavailable(
                "the identical delivery this one repeats is still being recorded".into(),
            ));
        };
        // The first delivery's own request may be gone (its client hung up): whoever sees the
        // result first settles the entry.
        self.settle(delivery, seq, &result);
        result.map(|outcome| repeat_of(outcome, arrived_ms))
    }

    /// Turns the entry `seq` of `delivery` from in flight into recorded (a success) or removes
    /// it (a failure: the next identical delivery is recorded afresh). Does nothing when the
    /// entry was settled or evicted already.
    fn settle(&self, delivery: Delivery, seq: u64, result: &Result<Outcome, ProcessError>) {
        let now_ms = self.now_ms();
        let mut shard = lock(&self.shards[self.shard_of(&delivery)]);
        let Some(entry) = shard.entries.get_mut(&delivery) else {
            return;
        };
        if entry.seq != seq || !matches!(entry.state, State::InFlight(_)) {
            return;
        }
        match result {
            Ok(outcome @ (Outcome::Created { .. } | Outcome::Duplicate { .. })) => {
                entry.state = State::Recorded(repeat_of(outcome.clone(), entry.arrived_ms));
                entry.expires_ms = now_ms.saturating_add(millis(self.settings.window));
            }
            // Nothing recorded (an error; an answer that records nothing): nothing to repeat.
            _ => {
                shard.entries.remove(&delivery);
                self.entries.decrement(1.0);
            }
        }
    }

    fn insert(&self, shard: &mut Shard, delivery: Delivery, entry: Entry) {
        let seq = entry.seq;
        if shard.entries.insert(delivery, entry).is_none() {
            self.entries.increment(1.0);
        }
        shard.order.push_back((delivery, seq));
        // The cap counts order slots, stale ones included, so neither the entries nor the
        // slots can outgrow it.
        while shard.order.len() > self.per_shard {
            let Some((oldest, seq)) = shard.order.pop_front() else {
                break;
            };
            self.remove_if_current(shard, oldest, seq);
        }
    }

    /// Drops entries from the old end while they are stale or expired; stops at the first live
    /// one (entries behind it are checked when looked up, and go at the latest when it does).
    fn drop_expired(&self, shard: &mut Shard, now_ms: i64) {
        while let Some(&(oldest, seq)) = shard.order.front() {
            let live = shard
                .entries
                .get(&oldest)
                .is_some_and(|e| e.seq == seq && e.expires_ms > now_ms);
            if live {
                return;
            }
            shard.order.pop_front();
            self.remove_if_current(shard, oldest, seq);
        }
    }

    fn remove_if_current(&self, shard: &mut Shard, delivery: Delivery, seq: u64) {
        if shard.entries.get(&delivery).is_some_and(|e| e.seq == seq) {
            shard.entries.remove(&delivery);
            self.entries.decrement(1.0);
        }
    }

    fn shard_of(&self, delivery: &Delivery) -> usize {
        // The digest is uniformly distributed already.
        let bytes = delivery.as_bytes();
        let low = u64::from_le_bytes([
            bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
        ]);
        (low % self.shards.len() as u64) as usize
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().as_millisecond()
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        // The gauge is process-wide: take back what this window added.
        self.entries.decrement(self.len() as f64);
    }
}

/// What a repeat of a delivery answered `outcome` is told: the same RR and ordinal; for the
/// delivery that created the RR, ordinal 1 at the time it arrived.
fn repeat_of(outcome: Outcome, arrived_ms: i64) -> Outcome {
    match outcome {
        Outcome::Created { name, namespace } => {
            let at = Timestamp::from_millisecond(arrived_ms).unwrap_or(Timestamp::UNIX_EPOCH);
            Outcome::Duplicate {
                name,
                namespace,
                count: 1,
                first_seen: at,
                last_seen: at,
            }
        }
        other => other,
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The shard, even if a panic elsewhere poisoned its lock: its maps stay consistent between
/// statements, and a lost entry only costs a count.
fn lock(shard: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    shard
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use futures::FutureExt as _;

    use super::*;
    use crate::clock::ManualClock;
    use crate::fingerprint::Fingerprint;
    use crate::k8s::types::SignalSource;

    const WINDOW: Duration = Duration::from_secs(10);
    const WAIT: Duration = Duration::from_secs(5);

    fn start() -> Timestamp {
        "2026-03-01T12:00:00Z".parse().unwrap()
    }

    fn window_of(max_entries: usize, window: Duration) -> (Arc<Window>, ManualClock) {
        let clock = ManualClock::new(start());
        let settings = Settings {
            window,
            max_entries,
            wait: WAIT,
        };
        let window = Window::new(settings, Arc::new(clock.clone()), metrics::Gauge::noop());
        (Arc::new(window), clock)
    }

    fn delivery(i: u32) -> Delivery {
        let fingerprint = Fingerprint::of(None, "ns", "Pod", "api-1");
        Delivery::digest(SignalSource::Prometheus, &fingerprint)
            .number("i", Some(i64::from(i)))
            .finish()
    }

    fn counted(count: i64) -> Outcome {
        Outcome::Duplicate {
            name: "rr-a".into(),
            namespace: "ns".into(),
            count,
            first_seen: start(),
            last_seen: start(),
        }
    }

    fn created() -> Outcome {
        Outcome::Created {
            name: "rr-a".into(),
            namespace: "ns".into(),
        }
    }

    /// What records: answers `result` and counts how many times it ran.
    fn recorder(
        runs: &Arc<AtomicUsize>,
        result: Result<Outcome, ProcessError>,
    ) -> impl Future<Output = Result<Outcome, ProcessError>> + Send + 'static {
        let runs = runs.clone();
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            result
        }
    }

    /// What records once `gate` opens (or never, if it is dropped unsent).
    fn gated(
        runs: &Arc<AtomicUsize>,
        gate: tokio::sync::oneshot::Receiver<Result<Outcome, ProcessError>>,
    ) -> impl Future<Output = Result<Outcome, ProcessError>> + Send + 'static {
        let runs = runs.clone();
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            match gate.await {
                Ok(result) => result,
                Err(_) => std::future::pending().await,
            }
        }
    }

    #[tokio::test]
    async fn a_repeat_within_the_window_gets_the_ordinal_it_repeats_and_records_nothing() {
        let (window, clock) = window_of(100, WINDOW);
        let runs = Arc::new(AtomicUsize::new(0));
        let first = window.answer(delivery(1), recorder(&runs, Ok(counted(5))));
        assert_eq!(first.await, Answer::Recorded(Ok(counted(5))));
        clock.advance(WINDOW - Duration::from_millis(1));
        let again = window.answer(delivery(1), recorder(&runs, Ok(counted(6))));
        assert_eq!(again.await, Answer::Repeat(Ok(counted(5))));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Another delivery is another matter.
        let other = window.answer(delivery(2), recorder(&runs, Ok(counted(6))));
        assert_eq!(other.await, Answer::Recorded(Ok(counted(6))));
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_repeat_of_the_delivery_that_created_the_rr_is_ordinal_one() {
        let (window, clock) = window_of(100, WINDOW);
        let runs = Arc::new(AtomicUsize::new(0));
        let first = window.answer(delivery(1), recorder(&runs, Ok(created())));
        assert_eq!(first.await, Answer::Recorded(Ok(created())));
        clock.advance(Duration::from_secs(3));
        let again = window.answer(delivery(1), recorder(&runs, Ok(counted(2))));
        // Ordinal 1, at the time the first one arrived (not the repeat's).
        assert_eq!(again.await, Answer::Repeat(Ok(counted(1))));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn after_the_window_an_identical_delivery_counts_again() {
        let (window, clock) = window_of(100, WINDOW);
        let runs = Arc::new(AtomicUsize::new(0));
        let first = window.answer(delivery(1), recorder(&runs, Ok(counted(1))));
        assert!(matches!(first.await, Answer::Recorded(Ok(_))));
        clock.advance(WINDOW);
        let again = window.answer(delivery(1), recorder(&runs, Ok(counted(2))));
        assert_eq!(again.await, Answer::Recorded(Ok(counted(2))));
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        // And that one is remembered in turn.
        let third = window.answer(delivery(1), recorder(&runs, Ok(counted(3))));
        assert_eq!(third.await, Answer::Repeat(Ok(counted(2))));
        // Expired entries go as newer ones arrive: one entry left, not two.
        clock.advance(WINDOW);
        let other = window.answer(delivery(2), recorder(&runs, Ok(counted(4))));
        assert!(matches!(other.await, Answer::Recorded(Ok(_))));
        assert_eq!(window.len(), 1);
    }

    #[tokio::test]
    async fn a_zero_window_records_every_delivery() {
        let (window, _clock) = window_of(100, Duration::ZERO);
        let runs = Arc::new(AtomicUsize::new(0));
        for count in 1..=3 {
            let answer = window.answer(delivery(1), recorder(&runs, Ok(counted(count))));
            assert_eq!(answer.await, Answer::Recorded(Ok(counted(count))));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert!(window.is_empty());
    }

    #[tokio::test]
    async fn at_the_cap_the_oldest_is_forgotten_first_and_nothing_is_refused() {
        // One shard: a strict order.
        let (window, _clock) = window_of(1, WINDOW);
        let runs = Arc::new(AtomicUsize::new(0));
        for i in [1, 2] {
            let answer = window.answer(delivery(i), recorder(&runs, Ok(counted(i.into()))));
            assert!(matches!(answer.await, Answer::Recorded(Ok(_))));
        }
        assert_eq!(window.len(), 1);
        let newest = window.answer(delivery(2), recorder(&runs, Ok(counted(9))));
        assert_eq!(newest.await, Answer::Repeat(Ok(counted(2))));
        // The oldest was forgotten: its repeat counts again (degraded, never lost).
        let oldest = window.answer(delivery(1), recorder(&runs, Ok(counted(3))));
        assert_eq!(oldest.await, Answer::Recorded(Ok(counted(3))));
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn the_cap_of_a_sharded_window_holds_and_the_latest_are_remembered() {
        let max = SHARDS * MIN_PER_SHARD;
        let (window, _clock) = window_of(max, WINDOW);
        let runs = Arc::new(AtomicUsize::new(0));
        for i in 0..40_000 {
            let answer = window.answer(delivery(i), recorder(&runs, Ok(counted(i.into()))));
            assert!(matches!(answer.await, Answer::Recorded(Ok(_))));
            assert!(window.len() <= max, "{} entries", window.len());
        }
        // Every shard keeps its newest; the very latest delivery is certainly remembered,
        // the very first certainly not.
        assert_eq!(window.len(), max);
        let latest = window.answer(delivery(39_999), recorder(&runs, Ok(counted(0))));
        assert_eq!(latest.await, Answer::Repeat(Ok(counted(39_999))));
        let first = window.answer(delivery(0), recorder(&runs, Ok(counted(0))));
        assert_eq!(first.await, Answer::Recorded(Ok(counted(0))));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_identical_deliveries_are_recorded_once_and_share_the_ordinal() {
        let (window, _clock) = window_of(100, WINDOW);
        let runs = Arc::new(AtomicUsize::new(0));
        let (open, gate) = tokio::sync::oneshot::channel();
        let mut first = Some(gated(&runs, gate).boxed());
        let mut answers = Vec::new();
        for _ in 0..3 {
            // Every delivery brings its own recorder; only the first one's may run.
            let record = first
                .take()
                .unwrap_or_else(|| recorder(&runs, Ok(counted(9))).boxed());
            let window = window.clone();
            answers.push(tokio::spawn(async move {
                window.answer(delivery(1), record).await
            }));
            // Paused time moves only once every task is blocked: this one has arrived.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(answers.iter().all(|a| !a.is_finished()), "nobody waited");
        open.send(Ok(counted(4))).unwrap();
        let mut got = Vec::new();
        for answer in answers {
            got.push(answer.await.unwrap());
        }
        assert_eq!(
            got,
            [
                Answer::Recorded(Ok(counted(4))),
                Answer::Repeat(Ok(counted(4))),
                Answer::Repeat(Ok(counted(4))),
            ]
        );
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_original_is_not_remembered_and_its_waiters_get_its_error() {
        let (window, _clock) = window_of(100, WINDOW);
        let runs = Arc::new(AtomicUsize::new(0));
        let (open, gate) = tokio::sync::oneshot::channel();
        let first = {
            let (window, record) = (window.clone(), gated(&runs, gate));
            tokio::spawn(async move { window.answer(delivery(1), record).await })
        };
        let waiter = {
            let (window, record) = (window.clone(), recorder(&runs, Ok(counted(9))));
            tokio::spawn(async move { window.answer(delivery(1), record).await })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        let error = ProcessError::Unavailable("injected".into());
        open.send(Err(error.clone())).unwrap();
        assert_eq!(first.await.unwrap(), Answer::Recorded(Err(error.clone())));
        assert_eq!(waiter.await.unwrap(), Answer::Repeat(Err(error)));
        assert!(window.is_empty());
        // The sender's retry is recorded afresh.
        let retry = window.answer(delivery(1), recorder(&runs, Ok(counted(1))));
        assert_eq!(retry.await, Answer::Recorded(Ok(counted(1))));
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_repeat_waits_for_its_original_at_most_the_request_deadline() {
        let (window, _clock) = window_of(100, WINDOW);
        let runs = Arc::new(AtomicUsize::new(0));
        let (_never, gate) = tokio::sync::oneshot::channel();
        let first = {
            let (window, record) = (window.clone(), gated(&runs, gate));
            tokio::spawn(async move { window.answer(delivery(1), record).await })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        let started = tokio::time::Instant::now();
        let repeat = window.answer(delivery(1), recorder(&runs, Ok(counted(1))));
        assert!(matches!(
            repeat.await,
            Answer::Repeat(Err(ProcessError::Unavailable(_)))
        ));
        assert_eq!(started.elapsed(), WAIT);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        first.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn an_original_whose_client_hung_up_still_answers_its_repeat() {
        let (window, _clock) = window_of(100, WINDOW);
        let runs = Arc::new(AtomicUsize::new(0));
        let (open, gate) = tokio::sync::oneshot::channel();
        let first = {
            let (window, record) = (window.clone(), gated(&runs, gate));
            tokio::spawn(async move { window.answer(delivery(1), record).await })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        // The request is dropped mid-way; what it was recording is not.
        first.abort();
        assert!(first.await.unwrap_err().is_cancelled());
        open.send(Ok(created())).unwrap();
        let repeat = window.answer(delivery(1), recorder(&runs, Ok(counted(2))));
        assert_eq!(repeat.await, Answer::Repeat(Ok(counted(1))));
        let again = window.answer(delivery(1), recorder(&runs, Ok(counted(2))));
        assert_eq!(again.await, Answer::Repeat(Ok(counted(1))));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
