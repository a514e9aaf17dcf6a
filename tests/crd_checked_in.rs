//! The checked-in CRD must be exactly what the Rust types generate. Regenerate with
//! `UPDATE_CRD=1 cargo test --test crd_checked_in`.
#![allow(clippy::unwrap_used)]

const PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/crds/remediationrequests.yaml"
);

#[test]
fn checked_in_crd_matches_the_types() {
    let generated = gateway::k8s::types::crd_yaml().unwrap();
    if std::env::var_os("UPDATE_CRD").is_some() {
        std::fs::write(PATH, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(PATH).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{PATH} differs from what src/k8s/types.rs generates; run \
         `UPDATE_CRD=1 cargo test --test crd_checked_in` and commit the result"
    );
}
