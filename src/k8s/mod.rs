//! Everything that talks to Kubernetes: the RR types, and the create / patch calls with
//! deadlines.

pub mod types;

pub use types::{RemediationRequest, RemediationRequestSpec, RemediationRequestStatus};
