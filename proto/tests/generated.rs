//! The committed wire code is current: regenerates `src/wire/tsercom.rs` (prost messages and
//! the tonic service) and `src/wire/descriptor.bin` (the encoded descriptors, without source
//! info) from `tsercom/*.proto` with protox and tonic-prost-build, and compares.
//!
//! After changing a `.proto` file, run
//! `TSERCOM_REGENERATE=1 cargo test -p tsercom-proto --test generated` and commit the result.

use std::path::{Path, PathBuf};

use prost::Message as _;

type BoxError = Box<dyn std::error::Error>;

/// Generates into `out`: `tsercom.rs` and `descriptor.bin`.
fn generate(out: &Path) -> Result<(), BoxError> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files: Vec<PathBuf> = tsercom_proto::PROTO_FILES
        .iter()
        .map(|(path, _)| root.join(path))
        .collect();
    let fds = protox::compile(&files, [root])?;
    let mut bare = fds.clone();
    for file in &mut bare.file {
        file.source_code_info = None;
    }
    std::fs::write(out.join("descriptor.bin"), bare.encode_to_vec())?;
    tonic_prost_build::configure()
        .bytes(".tsercom.Sample.payload")
        .out_dir(out)
        .compile_fds(fds)?;
    Ok(())
}

#[test]
fn committed_wire_code_is_current() -> Result<(), BoxError> {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/wire");
    let fresh = std::env::temp_dir().join(format!("tsercom-proto-gen-{}", std::process::id()));
    std::fs::create_dir_all(&fresh)?;
    generate(&fresh)?;
    let regenerate = std::env::var_os("TSERCOM_REGENERATE").is_some();
    let mut stale = Vec::new();
    for name in ["tsercom.rs", "descriptor.bin"] {
        let new = std::fs::read(fresh.join(name))?;
        let old = std::fs::read(committed.join(name)).unwrap_or_default();
        if new != old {
            if regenerate {
                std::fs::write(committed.join(name), &new)?;
            } else {
                stale.push(name);
            }
        }
    }
    std::fs::remove_dir_all(&fresh)?;
    assert!(
        stale.is_empty(),
        "src/wire/{stale:?} differ from what tsercom/*.proto generates; run \
         `TSERCOM_REGENERATE=1 cargo test -p tsercom-proto --test generated` and commit"
    );
    Ok(())
}

#[test]
fn proto_files_are_the_package_files() -> Result<(), BoxError> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (path, text) in tsercom_proto::PROTO_FILES {
        assert_eq!(std::fs::read_to_string(root.join(path))?, *text, "{path}");
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(root.join("tsercom"))?
        .map(|e| e.map(|e| format!("tsercom/{}", e.file_name().to_string_lossy())))
        .collect::<Result<_, _>>()?;
    on_disk.sort();
    let mut listed: Vec<String> = tsercom_proto::PROTO_FILES
        .iter()
        .map(|(p, _)| (*p).to_owned())
        .collect();
    listed.sort();
    assert_eq!(on_disk, listed, "every .proto file is in PROTO_FILES");
    Ok(())
}
