//! Deduplication (DESIGN.md §5): the watch-fed fingerprint [`index`], the [`engine`] that
//! decides create-or-count and writes with group commit, and the [`watch`] that feeds the
//! index.

pub mod engine;
pub mod index;
pub mod rr;
pub mod watch;

pub use engine::{CommitObserver, Engine, EngineSettings, NoObserver};
pub use index::{Index, RrState};
