//! The seam between the HTTP layer and deduplication: the API hands each valid [`Signal`] to
//! a [`Processor`] and turns its [`Outcome`] or [`ProcessError`] into a response. The product
//! processes with the dedup [`Engine`]; the HTTP tests plug in a fake.

use std::future::Future;

use crate::dedup::Engine;
pub use crate::dedup::{Outcome, ProcessError};
use crate::ingest::Signal;
use crate::k8s::store::RrStore;

/// Records signals.
pub trait Processor: Send + Sync + 'static {
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
