//! Deduplication (DESIGN.md §5): the [`engine`] that decides create-or-count and writes with
//! group commit, the [`redelivery`] window that answers a repeated delivery without counting
//! it, the [`rr`] builder of new RRs, the [`outcome`] of a signal, and the [`watch`] that feeds
//! the [`crate::index`].

pub mod engine;
pub mod outcome;
pub mod redelivery;
pub mod rr;
pub mod watch;

pub use engine::{Engine, Settings};
pub use outcome::{Outcome, ProcessError};
