//! Talking to etcd directly, over its client port in plain HTTP/1.0 (the connection closes
//! after each answer, so no HTTP client is needed): the `/health` probe, and the few calls of
//! the v3 JSON gateway (`/v3/kv/*`) the fault hooks use — reading the current revision,
//! writing a key, compacting.
//!
//! The gateway takes and returns protobuf JSON: keys and values are base64, 64-bit integers
//! are strings.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Deadline of one call; a paused or stopped etcd fails it instead of hanging the caller.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest answer read (the calls here get a few hundred bytes back).
const MAX_ANSWER_BYTES: u64 = 1024 * 1024;

/// Whether etcd answers `/health` with `"health":"true"`.
pub(crate) async fn healthy(port: u16) -> bool {
    let request = "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    exchange(port, request.as_bytes())
        .await
        .is_ok_and(|answer| String::from_utf8_lossy(&answer).contains(r#""health":"true""#))
}

/// etcd's current revision (the header of a range request; the key does not matter).
pub(crate) async fn revision(port: u16) -> Result<i64> {
    let answer = call(port, "/v3/kv/range", &json!({ "key": encode("/") })).await?;
    header_revision(&answer)
}

/// Writes `value` under `key` and returns the revision of the write.
pub(crate) async fn put(port: u16, key: &str, value: &str) -> Result<i64> {
    let body = json!({ "key": encode(key), "value": encode(value) });
    let answer = call(port, "/v3/kv/put", &body).await?;
    header_revision(&answer)
}

/// Compacts etcd's history up to `revision`, waiting until the compaction is physically done
/// (`physical: true`), so that no read or watch at an older revision can succeed afterwards.
/// A history already compacted that far is not an error.
pub(crate) async fn compact(port: u16, revision: i64) -> Result<()> {
    let body = json!({ "revision": revision.to_string(), "physical": true });
    match call(port, "/v3/kv/compaction", &body).await {
        Ok(_) => Ok(()),
        Err(error) if format!("{error:#}").contains("required revision has been compacted") => {
            Ok(())
        }
        Err(error) => Err(error),
    }
}

/// POSTs `body` to `path` and returns the JSON answer of a 200; anything else is an error
/// quoting the answer.
async fn call(port: u16, path: &str, body: &Value) -> Result<Value> {
    let body = serde_json::to_vec(body)?;
    let mut request = format!(
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let answer = exchange(port, &request)
        .await
        .with_context(|| format!("etcd {path}"))?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .with_context(|| format!("etcd {path}: malformed answer {answer:?}"))?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("etcd {path}: {status}: {}", body.trim());
    }
    serde_json::from_str(body).with_context(|| format!("etcd {path}: answer {body:?}"))
}

/// Sends `request` on a new connection and reads the answer until etcd closes it.
async fn exchange(port: u16, request: &[u8]) -> Result<Vec<u8>> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(request).await?;
        let mut answer = Vec::new();
        stream
            .take(MAX_ANSWER_BYTES)
            .read_to_end(&mut answer)
            .await?;
        Ok::<_, std::io::Error>(answer)
    };
    Ok(tokio::time::timeout(CALL_TIMEOUT, exchange)
        .await
        .context("etcd did not answer in time")??)
}

fn encode(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// `header.revision` of an answer (a string in protobuf JSON; a number is accepted too).
fn header_revision(answer: &Value) -> Result<i64> {
    let revision = &answer["header"]["revision"];
    revision
        .as_str()
        .and_then(|text| text.parse().ok())
        .or_else(|| revision.as_i64())
        .with_context(|| format!("etcd's answer has no header.revision: {answer}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_revision_is_read_as_a_string_or_a_number() {
        let header = |revision: Value| json!({ "header": { "revision": revision } });
        assert_eq!(header_revision(&header(json!("42"))).unwrap(), 42);
        assert_eq!(header_revision(&header(json!(42))).unwrap(), 42);
        assert!(header_revision(&json!({})).is_err());
    }
}
