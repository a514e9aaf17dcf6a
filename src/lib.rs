//! Alert ingestion gateway.
#![deny(missing_docs)]

pub mod k8s;
