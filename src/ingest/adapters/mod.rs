//! One module per wire format.

pub mod alertmanager;
pub mod kubernetes_event;
mod wire;
