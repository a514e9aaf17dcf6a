//! The seam between the HTTP layer and deduplication: the API hands each valid [`Signal`] to
//! a [`Processor`], first to [`Processor::admit`] (which may rewrite its target or answer it
//! on the spot) and then to [`Processor::process`], and turns its [`Outcome`] or
//! [`ProcessError`] into a response. The product processes with the dedup [`Engine`] behind
//! the redelivery window ([`Redeliveries`]) behind the owner stage ([`Owners`]); the HTTP
//! tests plug in a fake.

use std::future::Future;
use std::sync::Arc;

use crate::dedup::Engine;
use crate::dedup::redelivery::{self, Answer, Window};
pub use crate::dedup::{Outcome, ProcessError};
use crate::ingest::Signal;
use crate::k8s::store::RrStore;
use crate::k8s::types::SignalSource;
use crate::owners::{self, Lookup, Verdict};
use crate::telemetry::{Metrics, Source};

/// Records signals.
pub trait Processor: Send + Sync + 'static {
    /// Prepares one signal before it is recorded, synchronously and without any API call:
    /// may rewrite its target and fingerprint (owner resolution), or answer it without
    /// recording it (`Some`, out of scope). By default, takes it as it is.
    fn admit(&self, signal: &mut Signal) -> Option<Outcome> {
        let _ = signal;
        None
    }

    /// Records one signal: creates its RR or counts it onto the active one.
    fn process(&self, signal: Signal)
    -> impl Future<Output = Result<Outcome, ProcessError>> + Send;
}

impl<S: RrStore> Processor for Engine<S> {
    fn process(
        &self,
        signal: Signal,
    ) -> impl Future<Output = Result<Outcome, ProcessError>> + Send {
        Engine::process(self, signal)
    }
}

/// A processor behind the owner stage: [`Processor::admit`] resolves the target's owner chain
/// and applies the scope rule; the rest is `P`'s.
pub struct Owners<P, L> {
    /// What records the admitted signals.
    pub inner: Arc<P>,
    stage: owners::Stage<L>,
}

impl<P, L: Lookup> Owners<P, L> {
    /// `inner` behind `stage`.
    pub fn new(inner: Arc<P>, stage: owners::Stage<L>) -> Self {
        Owners { inner, stage }
    }
}

impl<P: Processor, L: Lookup> Processor for Owners<P, L> {
    fn admit(&self, signal: &mut Signal) -> Option<Outcome> {
        if let Some(outcome) = self.inner.admit(signal) {
            return Some(outcome);
        }
        match self.stage.apply(signal) {
            Verdict::Accept => None,
            Verdict::OutOfScope { reason, message } => Some(Outcome::NotAccepted {
                reason: reason.label(),
                message,
            }),
        }
    }

    fn process(
        &self,
        signal: Signal,
    ) -> impl Future<Output = Result<Outcome, ProcessError>> + Send {
        self.inner.process(signal)
    }
}

/// A processor behind the redelivery window ([`redelivery`]): a delivery identical to one
/// recorded within `redelivery.window`, or being recorded, is answered with that one's outcome
/// and never reaches `P`; the rest is `P`'s.
pub struct Redeliveries<P> {
    /// What records new deliveries.
    pub inner: Arc<P>,
    window: Window,
    metrics: Metrics,
}

impl<P> Redeliveries<P> {
    /// `inner` behind a window of `settings`, on `clock`.
    pub fn new(
        inner: Arc<P>,
        settings: redelivery::Settings,
        clock: Arc<dyn crate::clock::Clock>,
        metrics: Metrics,
    ) -> Self {
        let window = Window::new(settings, clock, metrics.redelivery_window_entries.clone());
        Redeliveries {
            inner,
            window,
            metrics,
        }
    }

    /// The window.
    pub fn window(&self) -> &Window {
        &self.window
    }
}

impl<P: Processor> Processor for Redeliveries<P> {
    fn admit(&self, signal: &mut Signal) -> Option<Outcome> {
        self.inner.admit(signal)
    }

    async fn process(&self, signal: Signal) -> Result<Outcome, ProcessError> {
        let (delivery, source) = (signal.delivery, signal.source);
        let inner = self.inner.clone();
        // Owned, so that identical deliveries arriving meanwhile can share it ('static) and it
        // outlives this request if its client hangs up.
        let record = async move { inner.process(signal).await };
        match self.window.answer(delivery, record).await {
            Answer::Recorded(result) => result,
            Answer::Repeat(result) => {
                if result.is_ok() {
                    self.metrics.redelivery(match source {
                        SignalSource::Prometheus => Source::Prometheus,
                        SignalSource::KubernetesEvents => Source::KubernetesEvent,
                    });
                }
                result
            }
        }
    }
}
