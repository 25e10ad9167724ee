//! CallerId: parsing, wire conversion and persistence.

use tsercom_runtime::{wire, CallerId, CallerIdError};

#[test]
fn random_ids_are_v4_canonical_and_distinct() {
    let a = CallerId::random();
    let b = CallerId::random();
    assert_ne!(a, b);
    let text = a.to_string();
    assert_eq!(text.len(), 36);
    assert_eq!(text, text.to_lowercase());
    assert_eq!(a.as_uuid().get_version_num(), 4);
    assert_eq!(CallerId::parse(&text).unwrap(), a);
}

#[test]
fn parse_accepts_uppercase_and_normalises() {
    let id = CallerId::random();
    let upper = id.to_string().to_uppercase();
    assert_eq!(CallerId::parse(&upper).unwrap().to_string(), id.to_string());
}

#[test]
fn parse_rejects_empty() {
    assert!(matches!(CallerId::parse(""), Err(CallerIdError::Empty)));
}

#[test]
fn parse_rejects_too_long_without_reading_it() {
    let long = "a".repeat(257);
    assert!(matches!(
        CallerId::parse(&long),
        Err(CallerIdError::TooLong { len: 257 })
    ));
}

#[test]
fn parse_rejects_non_uuid_text_with_the_text_in_the_message() {
    let err = CallerId::parse("not-a-uuid").unwrap_err();
    assert!(matches!(err, CallerIdError::NotUuid { .. }));
    assert!(err.to_string().contains("not-a-uuid"), "{err}");
}

#[test]
fn parse_rejects_other_uuid_versions() {
    // A version 1 UUID.
    let err = CallerId::parse("c232ab00-9414-11ec-b3c8-9f6bdeced846").unwrap_err();
    assert!(
        matches!(err, CallerIdError::NotV4 { version: 1, .. }),
        "{err}"
    );
}

#[test]
fn proto_round_trip_and_missing_message() {
    let id = CallerId::random();
    let msg: wire::CallerId = id.into();
    assert_eq!(msg.id, id.to_string());
    assert_eq!(CallerId::try_from(msg).unwrap(), id);
    assert!(matches!(
        CallerId::try_from(None::<wire::CallerId>),
        Err(CallerIdError::Missing)
    ));
    let bad = wire::CallerId { id: "x".into() };
    assert!(CallerId::try_from(bad).is_err());
}

#[test]
fn persistent_id_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested-name.id");
    let first = CallerId::persistent(&path).unwrap();
    let second = CallerId::persistent(&path).unwrap();
    assert_eq!(first, second);
    let stored = std::fs::read_to_string(&path).unwrap();
    assert_eq!(stored.trim(), first.to_string());
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1);
}

#[cfg(unix)]
#[test]
fn persistent_id_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("id");
    CallerId::persistent(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn corrupt_file_is_an_error_naming_the_path_and_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.id");
    std::fs::write(&path, "definitely not a uuid").unwrap();
    let err = CallerId::persistent(&path).unwrap_err();
    assert!(matches!(err, CallerIdError::Corrupt { .. }));
    assert!(err.to_string().contains("corrupt.id"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "definitely not a uuid"
    );

    std::fs::write(&path, [0xff, 0xfe, 0x00]).unwrap();
    let err = CallerId::persistent(&path).unwrap_err();
    assert!(err.to_string().contains("corrupt.id"), "{err}");
}

#[test]
fn unreadable_location_is_an_io_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing-dir").join("id");
    let err = CallerId::persistent(&path).unwrap_err();
    assert!(matches!(err, CallerIdError::Io { .. }), "{err}");
    assert!(err.to_string().contains("missing-dir"), "{err}");
}

#[test]
fn racing_creators_agree_on_one_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raced.id");
    let ids: Vec<CallerId> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| CallerId::persistent(&path).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
}
