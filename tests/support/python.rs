//! Finding and running the Python interpreter used by cross-language tests.
//!
//! The interpreter needs `grpcio`, `grpcio-tools` and `protobuf`. It is `$TSERCOM_PYTHON` if
//! set, else `target/pyvenv/bin/python`, which `.ci/run` creates. Without it the
//! cross-language tests print why and pass as skipped, unless `TSERCOM_REQUIRE_PYTHON=1`
//! (set by `.ci/run`), where a missing interpreter fails the test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A Python interpreter with grpc tools installed.
pub struct Python {
    exe: PathBuf,
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl Python {
    /// The interpreter, or `None` (after printing why) when the test should be skipped.
    pub fn find(test: &str) -> Option<Python> {
        let exe = std::env::var_os("TSERCOM_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target/pyvenv/bin/python"));
        let ok = Command::new(&exe)
            .args(["-c", "import grpc, grpc_tools, google.protobuf"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return Some(Python { exe });
        }
        let msg = format!(
            "{test}: skipped: no Python with grpcio-tools at {} (run .ci/run once, or set TSERCOM_PYTHON)",
            exe.display()
        );
        if std::env::var("TSERCOM_REQUIRE_PYTHON").as_deref() == Ok("1") {
            panic!("{msg}, and TSERCOM_REQUIRE_PYTHON=1");
        }
        eprintln!("{msg}");
        None
    }

    /// Compiles `.proto` files under `include` with grpc_tools.protoc into `out`
    /// (Python modules `*_pb2.py` and `*_pb2_grpc.py`).
    pub fn protoc(&self, include: &Path, files: &[&str], out: &Path) {
        std::fs::create_dir_all(out).unwrap();
        let mut cmd = Command::new(&self.exe);
        cmd.args(["-m", "grpc_tools.protoc"])
            .arg(format!("-I{}", include.display()))
            .arg(format!("--python_out={}", out.display()))
            .arg(format!("--grpc_python_out={}", out.display()));
        cmd.args(files);
        let output = cmd.output().unwrap();
        assert_success("grpc_tools.protoc", &output);
    }

    /// Runs `script` with `args`, with `path` on `PYTHONPATH`; returns stdout.
    pub fn run(&self, script: &Path, path: &Path, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
        use std::io::Write;
        let mut child = Command::new(&self.exe)
            .arg(script)
            .args(args)
            .env("PYTHONPATH", path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(mut s) = child.stdin.take() {
            if let Some(data) = stdin {
                s.write_all(data).unwrap();
            }
        }
        let output = child.wait_with_output().unwrap();
        assert_success(&script.display().to_string(), &output);
        output.stdout
    }

    /// The interpreter's path.
    pub fn exe(&self) -> &Path {
        &self.exe
    }
}

fn assert_success(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The script directory `tests/python`.
pub fn scripts() -> PathBuf {
    workspace_root().join("tests/python")
}
