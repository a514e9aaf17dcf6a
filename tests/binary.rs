//! The `gateway` binary's own surface: `--version` names the commit it was built from, and a
//! bad option value exits 2 with a message naming the key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn gateway(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn version_names_the_commit() {
    let output = gateway(&["--version"]);
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let commit = text
        .trim()
        .strip_prefix(concat!("gateway ", env!("CARGO_PKG_VERSION"), " (commit "))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{text}"));
    let hash = commit.strip_suffix("-dirty").unwrap_or(commit);
    assert!(
        hash == "unknown" || (hash.len() == 12 && hash.chars().all(|c| c.is_ascii_hexdigit())),
        "{text}"
    );
}

#[test]
fn a_bad_value_exits_2_naming_the_key() {
    let output = gateway(&["--storm-history-size", "2", "--storm-threshold", "5"]);
    assert_eq!(output.status.code(), Some(2));
    let text = String::from_utf8(output.stderr).unwrap();
    assert!(text.contains("storm.history_size"), "{text}");
}
