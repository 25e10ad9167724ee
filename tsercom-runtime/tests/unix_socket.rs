//! What is particular to serving on a Unix domain socket path: a stale socket file is
//! replaced, a live one or another file is refused, and the file is removed at the end.
//! (The behaviour shared with TCP is tested on both in `transport.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tsercom_runtime::transport::{dial, Endpoint, Server, Shutdown, TransportError};

const DEADLINE: Duration = Duration::from_secs(10);

/// Whether a health check over `endpoint` is answered.
async fn answers(endpoint: &Endpoint) -> bool {
    let Ok(channel) = dial([endpoint]).await else {
        return false;
    };
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .is_ok()
}

#[tokio::test]
async fn a_stale_socket_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stale.sock");
    // A socket bound and dropped without removing its file: what a crash leaves.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());

    let server = Server::builder()
        .serve_endpoint(Endpoint::unix(&path))
        .await
        .unwrap();
    assert!(answers(server.endpoint()).await);
    assert_eq!(server.shutdown(DEADLINE).await.unwrap(), Shutdown::Graceful);
    assert!(!path.exists());
}

#[tokio::test]
async fn a_path_another_server_answers_on_is_refused_and_left_working() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = Endpoint::unix(dir.path().join("busy.sock"));
    let first = Server::builder()
        .serve_endpoint(endpoint.clone())
        .await
        .unwrap();

    let error = Server::builder()
        .serve_endpoint(endpoint.clone())
        .await
        .unwrap_err();
    match &error {
        TransportError::UnixPathInUse { path } => {
            assert_eq!(Some(path.as_path()), endpoint.as_unix());
        }
        other => panic!("expected UnixPathInUse, got {other:?}"),
    }
    assert!(error.to_string().contains("busy.sock"), "{error}");
    // The refused second server did not take the path from the first one.
    assert!(answers(&endpoint).await);
    drop(first);
}

#[tokio::test]
async fn a_file_that_is_not_a_socket_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.txt");
    std::fs::write(&path, b"precious").unwrap();
    let error = Server::builder()
        .serve_endpoint(Endpoint::unix(&path))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, TransportError::NotASocket { path: p } if *p == path),
        "{error:?}"
    );
    assert!(error.to_string().contains("data.txt"), "{error}");
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
}

#[tokio::test]
async fn a_missing_directory_is_a_bind_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("agg.sock");
    let error = Server::builder()
        .serve_endpoint(Endpoint::unix(&path))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, TransportError::BindUnix { path: p, .. } if *p == path),
        "{error:?}"
    );
    assert!(error.to_string().contains("no-such-dir"), "{error}");
}

#[tokio::test]
async fn a_directory_without_write_permission_is_a_permission_error() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o500)).unwrap();
    if std::fs::write(locked.join("probe"), b"").is_ok() {
        eprintln!("skipping: this user (root?) may write anywhere; nothing can be denied");
        return;
    }
    let path = locked.join("agg.sock");
    let error = Server::builder()
        .serve_endpoint(Endpoint::unix(&path))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, TransportError::UnixPermissionDenied { path: p, .. } if *p == path),
        "{error:?}"
    );
    assert!(error.to_string().contains("permission denied"), "{error}");
}

#[tokio::test]
async fn the_socket_file_is_removed_at_shutdown_but_not_a_newer_servers_file() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = Endpoint::unix(dir.path().join("agg.sock"));
    let path = endpoint.as_unix().unwrap().to_owned();

    let first = Server::builder()
        .serve_endpoint(endpoint.clone())
        .await
        .unwrap();
    assert_eq!(first.endpoint(), &endpoint);
    assert_eq!(first.tcp_addr(), None);
    assert_eq!(first.shutdown(DEADLINE).await.unwrap(), Shutdown::Graceful);
    assert!(!path.exists(), "shutdown removes the socket file");

    let second = Server::builder()
        .serve_endpoint(endpoint.clone())
        .await
        .unwrap();
    // Someone replaces the file under the running server (a newer instance whose
    // stale-file check ran first, say): dropping the old server leaves the new file.
    std::fs::remove_file(&path).unwrap();
    let third = Server::builder()
        .serve_endpoint(endpoint.clone())
        .await
        .unwrap();
    drop(second);
    assert!(path.exists(), "the newer server's socket file is kept");
    assert!(answers(&endpoint).await);
    drop(third);
    assert!(
        !path.exists(),
        "dropping the server removes its socket file"
    );
}
