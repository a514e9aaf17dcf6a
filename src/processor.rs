//! The seam between the HTTP layer and deduplication: the API hands each valid [`Signal`] to
//! a [`Processor`], first to [`Processor::admit`] (which may rewrite its target or answer it
//! on the spot) and then to [`Processor::process`], and turns its [`Outcome`] or
//! [`ProcessError`] into a response. The product processes with the dedup [`Engine`] behind
//! the owner stage ([`Owners`]); the HTTP tests plug in a fake.

use std::future::Future;
use std::sync::Arc;

use crate::dedup::Engine;
pub use crate::dedup::{Outcome, ProcessError};
use crate::ingest::Signal;
use crate::k8s::store::RrStore;
use crate::owners::{self, Lookup, Verdict};

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
