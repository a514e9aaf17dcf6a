//! The checked-in CRD must be exactly what the Rust types generate. Regenerate with
//! `scripts/update-golden.sh` (which runs this test with `UPDATE_CRD=1`); under CI (`CI` set)
//! the variable makes the test fail instead of rewriting, so a drift can never pass there.
#![allow(clippy::unwrap_used)]

const PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/crds/remediationrequests.yaml"
);

#[test]
fn checked_in_crd_matches_the_types() {
    let generated = gateway::k8s::types::crd_yaml().unwrap();
    let rewrite = std::env::var_os("UPDATE_CRD").is_some();
    assert!(
        !(rewrite && std::env::var_os("CI").is_some()),
        "UPDATE_CRD is set under CI: golden files are rewritten only by scripts/update-golden.sh"
    );
    if rewrite {
        std::fs::write(PATH, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(PATH).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{PATH} differs from what src/k8s/types.rs generates; run scripts/update-golden.sh \
         and commit the result"
    );
}
