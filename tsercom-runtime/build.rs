//! Compiles the wire protocol in `../proto` with protox (pure Rust, no `protoc`) and
//! generates prost messages and the tonic service for the tsercom stream.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "tsercom/caller_id.proto",
    "tsercom/time.proto",
    "tsercom/connection.proto",
    "tsercom/tensor.proto",
    "tsercom/stream.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_dir = root.join("..").join("proto");
    println!("cargo:rerun-if-changed={}", proto_dir.display());
    let files: Vec<PathBuf> = PROTOS.iter().map(|p| proto_dir.join(p)).collect();
    let fds = protox::compile(&files, [&proto_dir])?;
    tonic_prost_build::configure()
        .bytes(".tsercom.Sample.payload")
        .compile_fds(fds)?;
    Ok(())
}
