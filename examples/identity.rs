//! Identity and time, the two things every tsercom sample carries.
//!
//! Run: `cargo run --example identity -- [ID_FILE]`. Prints this machine's persistent
//! caller id (created on first run, the same on every later run) and the current time in
//! the wire representation.

use tsercom::{CallerId, Timestamp};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("tsercom-example.id"));
    let id = CallerId::persistent(&path)?;
    let now = Timestamp::now();
    let (seconds, nanos) = now.to_parts();
    println!("caller id   {id}   (stored in {})", path.display());
    println!(
        "now         {now}  (google.protobuf.Timestamp {{ seconds: {seconds}, nanos: {nanos} }})"
    );
    Ok(())
}
