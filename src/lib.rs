//! Alert ingestion gateway.
#![deny(missing_docs)]

pub mod fingerprint;
pub mod ingest;
pub mod k8s;
