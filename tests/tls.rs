//! TLS on the API listener, through the gateway's own `run` on a loopback port with
//! certificates made here: HTTPS answers (with HSTS, which plain HTTP never gets), plain HTTP to
//! the TLS port gets no answer, a renewed certificate is served without a restart, and with a
//! client CA only clients holding a certificate it issued get through (mTLS).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::certs;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gateway::api::tls::{Tls, TlsFiles};
use gateway::auth::{Authenticator, Denied, UserInfo};
use gateway::clock::SystemClock;
use gateway::config::Config;
use gateway::ingest::Signal;
use gateway::processor::{Outcome, ProcessError, Processor};
use gateway::{Listeners, Parts};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use tokio::sync::oneshot;

const TOKEN: &str = "tls-test-token";

/// Creates every signal.
struct Creates;

impl Processor for Creates {
    async fn process(&self, signal: Signal) -> Result<Outcome, ProcessError> {
        Ok(Outcome::Created {
            name: format!("rr-{}", &signal.fingerprint.to_string()[..12]),
            namespace: "remediation".into(),
        })
    }
}

/// Senders carry [`TOKEN`]; authentication stays on here too.
struct OneToken;

impl Authenticator for OneToken {
    fn authenticate<'a>(
        &'a self,
        headers: &'a HeaderMap,
    ) -> futures::future::BoxFuture<'a, Result<Option<UserInfo>, Denied>> {
        Box::pin(async move {
            match gateway::auth::bearer_token(headers)? {
                TOKEN => Ok(Some(UserInfo {
                    username: "system:serviceaccount:monitoring:alertmanager".into(),
                    ..UserInfo::default()
                })),
                _ => Err(Denied::Unauthenticated),
            }
        })
    }
}

/// The gateway serving TLS with `files` on a loopback port; stops when dropped.
struct Running {
    address: std::net::SocketAddr,
    plain: String,
    _stop: oneshot::Sender<()>,
}

async fn start(files: TlsFiles) -> Running {
    start_with(files, Config::default()).await
}

async fn start_with(files: TlsFiles, config: Config) -> Running {
    let mut listeners = Listeners::loopback().await.unwrap();
    listeners.api_tls = Some(Tls::load(files).unwrap());
    let address = listeners.api.local_addr().unwrap();
    let parts =
        Parts::processor(Arc::new(Creates), Arc::new(SystemClock)).with_auth(Arc::new(OneToken));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(gateway::run(config, parts, listeners, async move {
        let _ = stopped.await;
    }));
    Running {
        address,
        plain: format!("http://{address}"),
        _stop: stop,
    }
}

fn alert() -> Vec<u8> {
    let now = jiff::Timestamp::now();
    serde_json::to_vec(&serde_json::json!({
        "version": "4", "status": "firing",
        "alerts": [{"status": "firing", "startsAt": now.to_string(),
                    "labels": {"alertname": "TlsAlert", "namespace": "shop", "pod": "api-0"}}]
    }))
    .unwrap()
}

/// A TLS client trusting `ca`, presenting `client` if given.
fn connector(ca: &certs::Ca, client: Option<&certs::Files>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem().as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some(files) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(&files.cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(&files.key).unwrap(),
            )
            .unwrap(),
    };
    // Every connection a full handshake: a resumed session would report the certificate of
    // the session it resumes, not the one the gateway serves now.
    config.resumption = rustls::client::Resumption::disabled();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// What one HTTPS POST on a fresh connection got: status and HSTS header, plus the common name
/// of the server's certificate; or why it failed.
async fn post_tls(
    running: &Running,
    connector: &tokio_rustls::TlsConnector,
) -> Result<(StatusCode, Option<String>, String), String> {
    let tcp = tokio::net::TcpStream::connect(running.address)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("http: {e}"))?;
    tokio::spawn(connection);
    let request = Request::post("/api/v1/signals/prometheus")
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::from(alert())))
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = response.status();
    let hsts = response
        .headers()
        .get("strict-transport-security")
        .map(|v| v.to_str().unwrap().to_owned());
    let _ = response.into_body().collect().await;
    Ok((status, hsts, common_name(&leaf)))
}

/// The common name of a DER certificate (what [`certs::Ca::server`] was given).
fn common_name(der: &CertificateDer<'_>) -> String {
    // The CN is the only UTF8String/PrintableString rcgen writes after the OID 2.5.4.3 in the
    // subject; find its last occurrence (the issuer's comes first).
    let bytes = der.as_ref();
    let oid = [0x06, 0x03, 0x55, 0x04, 0x03];
    let at = bytes
        .windows(oid.len())
        .rposition(|w| w == oid)
        .expect("a common name");
    let len = bytes[at + oid.len() + 1] as usize;
    let start = at + oid.len() + 2;
    String::from_utf8_lossy(&bytes[start..start + len]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_is_served_with_hsts_and_a_renewed_certificate_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ca = certs::Ca::new("gateway-test-ca");
    let server = ca.server(dir.path(), "tls", "first");
    let running = start(TlsFiles {
        cert_file: server.cert.clone(),
        key_file: server.key.clone(),
        client_ca_file: None,
        reload_interval: Duration::from_millis(100),
    })
    .await;
    let client = connector(&ca, None);
    let (status, hsts, name) = post_tls(&running, &client).await.unwrap();
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(hsts.as_deref(), Some("max-age=31536000; includeSubDomains"));
    assert_eq!(name, "first");

    // Plain HTTP to the TLS port: no HTTP answer at all.
    let plain = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        plain.request(
            Request::post(format!("{}/api/v1/signals/prometheus", running.plain))
                .body(Full::new(Bytes::from(alert())))
                .unwrap(),
        ),
    )
    .await
    .expect("the connection is closed, not left hanging");
    assert!(answer.is_err(), "plain HTTP answered: {answer:?}");

    // Renewal: new files in place; new connections get the new certificate.
    ca.server(dir.path(), "tls", "second");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, name) = post_tls(&running, &client).await.unwrap();
        assert_eq!(status, StatusCode::CREATED);
        if name == "second" {
            break;
        }
        assert_eq!(name, "first");
        assert!(
            std::time::Instant::now() < deadline,
            "the renewed certificate was not served within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_client_ca_only_its_certificates_get_through() {
    let dir = tempfile::tempdir().unwrap();
    let ca = certs::Ca::new("gateway-test-ca");
    let server = ca.server(dir.path(), "tls", "gateway");
    let clients = certs::Ca::new("senders-ca");
    let running = start(TlsFiles {
        cert_file: server.cert,
        key_file: server.key,
        client_ca_file: Some(clients.write(&dir.path().join("clients.crt"))),
        reload_interval: Duration::from_secs(10),
    })
    .await;
    let alertmanager = clients.client(dir.path(), "alertmanager", "alertmanager");
    let (status, _, _) = post_tls(&running, &connector(&ca, Some(&alertmanager)))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::CREATED);

    let without = post_tls(&running, &connector(&ca, None)).await;
    assert!(without.is_err(), "no client certificate: {without:?}");
    let stranger = certs::Ca::new("other-ca").client(dir.path(), "stranger", "stranger");
    let foreign = post_tls(&running, &connector(&ca, Some(&stranger))).await;
    assert!(foreign.is_err(), "a certificate of another CA: {foreign:?}");
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = certs::Ca::new("gateway-test-ca");
    let one = ca.server(dir.path(), "one", "one");
    let two = ca.server(dir.path(), "two", "two");
    let error = Tls::load(TlsFiles {
        cert_file: one.cert,
        key_file: two.key.clone(),
        client_ca_file: None,
        reload_interval: Duration::from_secs(10),
    })
    .err()
    .expect("refused");
    assert!(
        error.to_string().contains(&two.key.display().to_string()),
        "{error}"
    );
}

/// Connections that never finish their TLS handshake hold slots like idle ones: at the cap the
/// oldest is closed for a new client, which gets through at once instead of waiting out the
/// handshake deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_handshakes_do_not_lock_out_a_real_client() {
    let dir = tempfile::tempdir().unwrap();
    let ca = certs::Ca::new("gateway-test-ca");
    let server = ca.server(dir.path(), "tls", "gateway");
    let mut config = Config::default();
    config.api.max_connections = 2;
    let running = start_with(
        TlsFiles {
            cert_file: server.cert,
            key_file: server.key,
            client_ca_file: None,
            reload_interval: Duration::from_secs(10),
        },
        config,
    )
    .await;
    let mut stalled = Vec::new();
    for _ in 0..5 {
        stalled.push(
            tokio::net::TcpStream::connect(running.address)
                .await
                .unwrap(),
        );
    }
    let started = std::time::Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_secs(3),
        post_tls(&running, &connector(&ca, None)),
    )
    .await
    .expect("answered within 3 s, not after the 10 s handshake deadline");
    assert_eq!(answer.unwrap().0, StatusCode::CREATED);
    eprintln!(
        "answered after {:?} behind 5 stalled handshakes",
        started.elapsed()
    );
}
