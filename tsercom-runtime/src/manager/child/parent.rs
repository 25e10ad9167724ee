//! The application's side of a child: starting it (greeting, start request), watching
//! it (control lines, its exit), restarting it, and stopping it.

use std::future::Future;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::{mpsc, oneshot};
use zeroize::Zeroizing;

use super::{ChildEvent, Restart, SpecJob, CHILD_ENV, HOOK_HELP, PROTOCOL_VERSION};
use crate::manager::{ErrorSlot, Managed, ManagerError};
use crate::queue;
use crate::transport::Endpoint;

/// Runtimes that share one child process.
pub(in crate::manager) struct Group {
    pub(super) key: Option<String>,
    pub(super) jobs: Vec<SpecJob>,
}

/// A running child process and its control pipe.
struct Running {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

/// What the supervisor needs to (re)start a child.
struct Launch {
    name: String,
    /// The start request; it holds the sources' keys, so it is wiped when dropped.
    start: Zeroizing<String>,
    jobs: usize,
    timeout: Duration,
    events: queue::Sender<ChildEvent>,
}

impl Group {
    pub(super) fn new(key: Option<String>, job: SpecJob) -> Group {
        Group {
            key,
            jobs: vec![job],
        }
    }

    /// Starts the child and the application's sources dialing it; the group's
    /// [`Managed`] stops them all.
    pub(in crate::manager) async fn run(
        self,
        errors: Arc<ErrorSlot>,
        events: queue::Sender<ChildEvent>,
    ) -> Option<Arc<dyn Managed>> {
        let name = self.key.clone().unwrap_or_else(|| {
            let names: Vec<&str> = self.jobs.iter().map(|j| j.name.as_str()).collect();
            names.join("+")
        });
        let fail = |jobs: &[SpecJob], e: ManagerError| {
            // The manager's error first: a caller woken by its handle's error then finds
            // it in `check_for_error` too.
            errors.set(e.clone());
            for job in jobs {
                (job.fail)(e.clone());
            }
        };
        if let Some((job, e)) = self
            .jobs
            .iter()
            .find_map(|j| j.check.clone().err().map(|e| (j, e)))
        {
            let e = ManagerError::Failed {
                name: job.name.clone(),
                message: e,
            };
            fail(&self.jobs, e);
            return None;
        }
        let dir = std::env::temp_dir().join(format!(
            "tsercom-{}-{:x}",
            std::process::id(),
            crate::engine::random_u64()
        ));
        // Only this user may reach the bridges (a Unix socket is reached through its
        // directory, whatever the umask made of the socket files).
        let created = {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
        };
        if let Err(e) = created {
            let message = format!("creating {}: {e}", dir.display());
            fail(&self.jobs, ManagerError::Failed { name, message });
            return None;
        }
        let bridges: Vec<PathBuf> = (0..self.jobs.len())
            .map(|i| dir.join(format!("{i}.sock")))
            .collect();
        let specs = &self.jobs;
        let mut start = json!({
            "op": "start",
            "memory_limit": specs.iter().find_map(|j| j.settings.memory_limit),
            "worker_threads": specs.iter().filter_map(|j| j.settings.worker_threads).max(),
            "jobs": specs.iter().zip(&bridges).map(|(j, b)| json!({
                "name": j.name,
                "runtime": j.runtime,
                "kind": j.kind,
                "bridge": Endpoint::Unix(b.clone()).to_string(),
                "incarnation": j.incarnation,
                "spec": (j.json)(),
            })).collect::<Vec<_>>(),
        });
        let text = Zeroizing::new(start.to_string());
        super::spec::wipe_keys(&mut start);
        let launch = Launch {
            name: name.clone(),
            start: text,
            jobs: specs.len(),
            timeout: specs
                .iter()
                .map(|j| j.settings.start_timeout)
                .max()
                .unwrap_or_default(),
            events,
        };
        let restart = specs.iter().find_map(|j| j.settings.restart);
        let running = match launch.spawn().await {
            Ok(r) => r,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                fail(&self.jobs, e);
                return None;
            }
        };
        let mut parents = Vec::new();
        for (job, bridge) in self.jobs.into_iter().zip(bridges) {
            if let Some(m) = (job.remote)(Endpoint::Unix(bridge))(Arc::clone(&errors)).await {
                parents.push(m);
            }
        }
        let (cmd, cmd_rx) = mpsc::channel(1);
        let supervisor = tokio::spawn(supervise(launch, running, restart, errors, cmd_rx));
        Some(Arc::new(ChildGroup {
            parents,
            cmd,
            supervisor: Mutex::new(Some(supervisor)),
            dir,
        }))
    }
}

impl Launch {
    /// Starts the child: greeting, start request, one `started` per source.
    async fn spawn(&self) -> Result<Running, ManagerError> {
        let failed = |message: String| ManagerError::Failed {
            name: self.name.clone(),
            message,
        };
        let exe = std::env::current_exe()
            .map_err(|e| failed(format!("finding the current executable: {e}")))?;
        let mut child = tokio::process::Command::new(exe)
            .env(CHILD_ENV, &self.name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| failed(format!("starting the child process: {e}")))?;
        let pid = child.id().unwrap_or_default();
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(failed("the child's pipes are missing".into()));
        };
        let name = self.name.clone();
        tokio::spawn(async move {
            // The child's log and panic output, tagged with what it runs.
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                super::log::forward(&name, pid, &line);
            }
        });
        let mut lines = BufReader::new(stdout).lines();
        let missing = |why: String| ManagerError::ChildHookMissing(format!("{HOOK_HELP} ({why})"));
        match tokio::time::timeout(self.timeout, lines.next_line()).await {
            Ok(Ok(Some(line))) => {
                let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                if op(&v) != "hello" {
                    let _ = child.kill().await;
                    return Err(missing(format!("its first output was {line:?}")));
                }
                if v.get("version").and_then(Value::as_u64) != Some(PROTOCOL_VERSION) {
                    let _ = child.kill().await;
                    return Err(failed(format!(
                        "the child speaks another control version: {line}"
                    )));
                }
            }
            Ok(_) => {
                let status = child.wait().await.map(describe).map(|d| d.2);
                let status = status.unwrap_or_else(|e| e.to_string());
                return Err(missing(format!("it {status} without answering")));
            }
            Err(_) => {
                let _ = child.kill().await;
                return Err(missing(format!(
                    "it did not answer within {:?}",
                    self.timeout
                )));
            }
        }
        let written = async {
            stdin.write_all(self.start.as_bytes()).await?;
            stdin.write_all(b"\n").await?;
            stdin.flush().await
        };
        if let Err(e) = written.await {
            return Err(failed(format!("sending the start request: {e}")));
        }
        let mut started = 0;
        let deadline = tokio::time::Instant::now() + self.timeout;
        while started < self.jobs {
            match tokio::time::timeout_at(deadline, lines.next_line()).await {
                Ok(Ok(Some(line))) => {
                    let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                    match op(&v) {
                        "started" => started += 1,
                        "error" | "panic" => {
                            let _ = child.kill().await;
                            return Err(control_error(&v, &self.name));
                        }
                        _ => {}
                    }
                }
                Ok(_) => {
                    let status = child.wait().await.map(describe).map(|d| d.2);
                    return Err(ManagerError::ChildExited {
                        name: self.name.clone(),
                        status: status.unwrap_or_else(|e| e.to_string()),
                    });
                }
                Err(_) => {
                    let _ = child.kill().await;
                    return Err(ManagerError::Timeout(self.name.clone()));
                }
            }
        }
        let _ = self.events.try_send(ChildEvent::Started {
            name: self.name.clone(),
            pid,
        });
        Ok(Running {
            child,
            stdin,
            lines,
        })
    }
}

fn op(v: &Value) -> &str {
    v.get("op").and_then(Value::as_str).unwrap_or("")
}

/// The manager's error for an `error` or `panic` line.
fn control_error(v: &Value, group: &str) -> ManagerError {
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or(group)
        .to_owned();
    let message = v
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("(no message)")
        .to_owned();
    if op(v) == "panic" {
        ManagerError::Panicked { name, message }
    } else {
        ManagerError::Failed { name, message }
    }
}

/// Exit code, signal, and both as text.
fn describe(status: ExitStatus) -> (Option<i32>, Option<i32>, String) {
    let text = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => {
            let name = match sig {
                6 => " (SIGABRT)",
                9 => " (SIGKILL)",
                11 => " (SIGSEGV)",
                15 => " (SIGTERM)",
                _ => "",
            };
            format!("killed by signal {sig}{name}")
        }
        (None, None) => "ended".to_owned(),
    };
    (status.code(), status.signal(), text)
}

/// A request to the supervisor.
struct Stop {
    grace: Duration,
    done: oneshot::Sender<()>,
}

/// Watches a child until it is stopped: its control lines become the manager's errors,
/// its death is reported (and, with `restart`, it is started again).
async fn supervise(
    launch: Launch,
    mut running: Running,
    restart: Option<Restart>,
    errors: Arc<ErrorSlot>,
    mut cmd: mpsc::Receiver<Stop>,
) {
    let mut restarts = 0u32;
    let mut eof = false;
    loop {
        tokio::select! {
            line = running.lines.next_line(), if !eof => match line {
                Ok(Some(line)) => {
                    let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                    if matches!(op(&v), "error" | "panic") {
                        let error = control_error(&v, &launch.name);
                        let name = v.get("name").and_then(Value::as_str).unwrap_or(&launch.name);
                        let _ = launch.events.try_send(ChildEvent::Failed {
                            name: name.to_owned(),
                            error: error.clone(),
                        });
                        errors.set(error);
                    }
                }
                _ => eof = true,
            },
            status = running.child.wait() => {
                let (code, signal, status) = match status {
                    Ok(s) => describe(s),
                    Err(e) => (None, None, e.to_string()),
                };
                tracing::warn!(runtime = %launch.name, %status, "a child process died");
                let _ = launch.events.try_send(ChildEvent::Exited {
                    name: launch.name.clone(),
                    code,
                    signal,
                    status: status.clone(),
                });
                restarts = restarts.saturating_add(1);
                let Some(delay) = restart.filter(|r| restarts <= r.max_restarts).map(|r| r.delay(restarts)) else {
                    errors.set(ManagerError::ChildExited { name: launch.name.clone(), status });
                    return;
                };
                let _ = launch.events.try_send(ChildEvent::Restarting {
                    name: launch.name.clone(),
                    attempt: restarts,
                    delay,
                });
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    stop = cmd.recv() => {
                        if let Some(stop) = stop {
                            let _ = stop.done.send(());
                        }
                        return;
                    }
                }
                match launch.spawn().await {
                    Ok(r) => {
                        running = r;
                        eof = false;
                    }
                    Err(e) => {
                        errors.set(e);
                        return;
                    }
                }
            }
            stop = cmd.recv() => {
                let grace = stop.as_ref().map(|s| s.grace).unwrap_or_default();
                let line = json!({"op": "stop", "grace_ms": grace.as_millis() as u64});
                let _ = running.stdin.write_all(format!("{line}\n").as_bytes()).await;
                let _ = running.stdin.flush().await;
                // The child forwards what it holds, flushes, and exits; killed only after.
                let deadline = grace.saturating_mul(2) + Duration::from_secs(1);
                if tokio::time::timeout(deadline, running.child.wait()).await.is_err() {
                    tracing::warn!(runtime = %launch.name, "the child did not stop in time: killed");
                    let _ = running.child.kill().await;
                }
                if let Some(stop) = stop {
                    let _ = stop.done.send(());
                }
                return;
            }
        }
    }
}

/// The sources of one child and its supervisor, stopped together.
struct ChildGroup {
    parents: Vec<Arc<dyn Managed>>,
    cmd: mpsc::Sender<Stop>,
    supervisor: Mutex<Option<tokio::task::JoinHandle<()>>>,
    dir: PathBuf,
}

impl Managed for ChildGroup {
    fn stop(&self, grace: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            // The application's sources flush to the bridge first, then the child stops
            // (flushing what it holds, to the application's aggregators too), then they do.
            for parent in self.parents.iter().filter(|p| p.stop_order() == 0) {
                parent.stop(grace).await;
            }
            let (done, done_rx) = oneshot::channel();
            if self.cmd.send(Stop { grace, done }).await.is_ok() {
                let _ = done_rx.await;
            }
            let supervisor = self
                .supervisor
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(s) = supervisor {
                let _ = s.await;
            }
            for parent in self.parents.iter().filter(|p| p.stop_order() != 0) {
                parent.stop(grace).await;
            }
        })
    }

    /// The lowest of its runtimes': a group with a source stops with the sources (its
    /// sources then flush first); one of aggregators only stops with the aggregators,
    /// after the sources in process that may feed them.
    fn stop_order(&self) -> u8 {
        self.parents
            .iter()
            .map(|p| p.stop_order())
            .min()
            .unwrap_or(1)
    }
}

impl Drop for ChildGroup {
    fn drop(&mut self) {
        if let Some(s) = self
            .supervisor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            // Dropping the supervisor drops the child, which is then killed.
            s.abort();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_name_their_code_or_signal() {
        let killed = describe(ExitStatus::from_raw(9));
        assert_eq!(
            killed,
            (None, Some(9), "killed by signal 9 (SIGKILL)".into())
        );
        let failed = describe(ExitStatus::from_raw(1 << 8));
        assert_eq!(failed, (Some(1), None, "exited with code 1".into()));
    }

    #[test]
    fn control_lines_become_the_managers_errors() {
        let panic = json!({"op": "panic", "name": "s", "message": "boom"});
        assert_eq!(
            control_error(&panic, "g"),
            ManagerError::Panicked {
                name: "s".into(),
                message: "boom".into()
            }
        );
        let error = json!({"op": "error", "message": "bad"});
        assert_eq!(
            control_error(&error, "g"),
            ManagerError::Failed {
                name: "g".into(),
                message: "bad".into()
            }
        );
    }
}
