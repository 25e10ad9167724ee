//! The same-host fast path: which host (and network namespace) this process runs in, and
//! where a serving source puts its Unix socket, so an aggregator on the same host dials
//! the socket instead of TCP.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Longest socket path `sun_path` holds (108 bytes with the terminating NUL).
#[cfg_attr(not(any(feature = "mdns", feature = "dns")), allow(dead_code))]
pub(crate) const MAX_SOCKET_PATH: usize = 107;

/// This host's identity as 32 hex digits: a SHA-256 of the machine id
/// (`/etc/machine-id`, else the boot id) and the inode of this process's network
/// namespace, so two namespaces on one host differ. `None` when neither id is readable.
pub(crate) fn host_identity() -> Option<&'static str> {
    static ID: OnceLock<Option<String>> = OnceLock::new();
    ID.get_or_init(|| {
        let machine = ["/etc/machine-id", "/proc/sys/kernel/random/boot_id"]
            .iter()
            .find_map(|p| {
                std::fs::read_to_string(p)
                    .ok()
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
            })?;
        let netns = std::fs::metadata("/proc/self/ns/net")
            .map(|m| format!("{}:{}", m.dev(), m.ino()))
            .unwrap_or_default();
        let digest = ring::digest::digest(
            &ring::digest::SHA256,
            format!("tsercom host\n{machine}\n{netns}").as_bytes(),
        );
        Some(
            digest.as_ref()[..16]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        )
    })
    .as_deref()
}

/// Whether `text` has the form of a host identity (32 lowercase hex digits).
#[cfg_attr(not(any(feature = "mdns", feature = "dns")), allow(dead_code))]
pub(crate) fn is_host_identity(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// A fresh socket path for this process: `$XDG_RUNTIME_DIR` (else `/tmp`)
/// `/tsercom-<pid>-<n>.sock`.
pub(crate) fn socket_path() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute() && d.is_dir())
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("tsercom-{}-{n}.sock", std::process::id()))
}

/// The socket to dial instead of TCP: `path` when `host` is this host's identity and
/// `path` is a socket here.
pub(crate) fn reachable_socket(host: Option<&str>, path: Option<&Path>) -> Option<PathBuf> {
    let (host, path) = (host?, path?);
    if Some(host) != host_identity() {
        return None;
    }
    let meta = std::fs::symlink_metadata(path).ok()?;
    meta.file_type().is_socket().then(|| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_stable_and_well_formed() {
        let id = host_identity().expect("a Linux host has a machine or boot id");
        assert!(is_host_identity(id), "{id}");
        assert_eq!(host_identity(), Some(id));
        assert!(!is_host_identity("not-an-id"));
    }

    #[test]
    fn socket_paths_are_unique_and_fit() {
        let a = socket_path();
        let b = socket_path();
        assert_ne!(a, b);
        assert!(a.as_os_str().len() <= MAX_SOCKET_PATH, "{}", a.display());
    }

    #[test]
    fn another_host_or_a_missing_socket_is_not_reachable() {
        let here = host_identity();
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.sock");
        assert_eq!(reachable_socket(here, Some(&missing)), None);
        let listener = std::os::unix::net::UnixListener::bind(dir.path().join("s.sock")).unwrap();
        let path = dir.path().join("s.sock");
        assert_eq!(reachable_socket(here, Some(&path)), Some(path.clone()));
        let other = "0".repeat(32);
        assert_eq!(reachable_socket(Some(&other), Some(&path)), None);
        assert_eq!(reachable_socket(here, None), None);
        drop(listener);
    }
}
