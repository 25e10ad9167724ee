//! Network namespaces joined by a veth pair, and child processes (this test binary
//! re-executed, optionally inside a namespace) driven by line commands on stdin and
//! answering with `@@ ` lines on stdout. Everything created here is removed on drop,
//! also when the test panics.

use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The prefix of every namespace these tests create: `tsnetns-<pid>-<n>{a,b}`.
const PREFIX: &str = "tsnetns-";

/// Runs `ip` with `args`; returns stderr on failure.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running `ip {}`: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Deletes namespaces left behind by earlier runs of these tests whose process is gone
/// (a test killed with SIGKILL cannot clean up).
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// Which end of the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

/// Two namespaces, `a` and `b`, joined by veth `va` (in `a`, 10.99.`subnet`.1/30) and
/// `vb` (in `b`, 10.99.`subnet`.2/30). Both are deleted on drop.
pub struct NetnsPair {
    pub a: String,
    pub b: String,
    pub addr_a: Ipv4Addr,
    pub addr_b: Ipv4Addr,
    created: Vec<String>,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl NetnsPair {
    /// Creates the pair, or says why it cannot (not root, no namespaces, no veth): the
    /// caller skips the test with that message.
    pub fn create(subnet: u8) -> Result<NetnsPair, String> {
        if !is_root() {
            return Err("not running as root".into());
        }
        remove_stale();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = format!("{PREFIX}{}-{n}", std::process::id());
        let mut pair = NetnsPair {
            a: format!("{base}a"),
            b: format!("{base}b"),
            addr_a: Ipv4Addr::new(10, 99, subnet, 1),
            addr_b: Ipv4Addr::new(10, 99, subnet, 2),
            created: Vec::new(),
        };
        for ns in [pair.a.clone(), pair.b.clone()] {
            ip(&["netns", "add", &ns])?;
            pair.created.push(ns);
        }
        let (a, b) = (pair.a.clone(), pair.b.clone());
        let addr_a = format!("{}/30", pair.addr_a);
        let addr_b = format!("{}/30", pair.addr_b);
        // Created directly inside our namespaces, so names cannot collide with anything.
        ip(&[
            "link", "add", "va", "netns", &a, "type", "veth", "peer", "name", "vb", "netns", &b,
        ])?;
        ip(&["-n", &a, "addr", "add", &addr_a, "dev", "va"])?;
        ip(&["-n", &b, "addr", "add", &addr_b, "dev", "vb"])?;
        for (ns, dev) in [(&a, "va"), (&b, "vb"), (&a, "lo"), (&b, "lo")] {
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        Ok(pair)
    }

    pub fn ns(&self, side: Side) -> &str {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }

    /// Brings one end of the veth pair up or down (down cuts the link both ways).
    pub fn set_link(&self, side: Side, up: bool) {
        let dev = match side {
            Side::A => "va",
            Side::B => "vb",
        };
        let state = if up { "up" } else { "down" };
        ip(&["-n", self.ns(side), "link", "set", dev, state]).unwrap();
    }

    /// Sets a sysctl inside one namespace (per-namespace keys such as
    /// `net.ipv4.tcp_retries2`).
    pub fn sysctl(&self, side: Side, key: &str, value: &str) {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let status = Command::new("ip")
            .args(["netns", "exec", self.ns(side), "sh", "-c"])
            .arg(format!("echo {value} > {path}"))
            .status()
            .unwrap();
        assert!(status.success(), "setting {key} in {}", self.ns(side));
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        // Deleting a namespace destroys the veth end in it, and with it the pair.
        for ns in self.created.drain(..) {
            if let Err(e) = ip(&["netns", "del", &ns]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// Creates a namespace pair, or prints why the test is skipped and returns `None`.
pub fn pair_or_skip(test: &str, subnet: u8) -> Option<NetnsPair> {
    match NetnsPair::create(subnet) {
        Ok(pair) => Some(pair),
        Err(why) => {
            println!("SKIPPED {test}: network namespaces are unavailable here ({why})");
            None
        }
    }
}

/// A child process: this test binary running one `#[test]` (the child entry point),
/// optionally inside a namespace. Killed (SIGKILL) and reaped on drop.
pub struct Child {
    name: String,
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Child {
    /// Starts `entry` (the name of the child-entry test) in `netns` (or here), with `env`.
    pub fn spawn(name: &str, netns: Option<&str>, entry: &str, env: &[(&str, String)]) -> Child {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        cmd.args(["--exact", entry, "--nocapture", "--test-threads=1"])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let tag = name.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // The harness may have printed `test child_entry ... ` on the same line.
                if let Some(at) = line.find("@@ ") {
                    if tx.send(line[at + 3..].to_owned()).is_err() {
                        break;
                    }
                } else if !line.trim().is_empty() && std::env::var_os("NETNS_VERBOSE").is_some() {
                    println!("[{tag}] {line}");
                }
            }
        });
        Child {
            name: name.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines: rx,
        }
    }

    /// Sends one command line.
    pub fn send(&mut self, cmd: &str) {
        let stdin = self.stdin.as_mut().expect("child stdin open");
        writeln!(stdin, "{cmd}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("{}: writing {cmd:?}: {e}", self.name));
    }

    /// The next answer line starting with `word`, within `timeout` (other lines are
    /// skipped). Panics on timeout or if the child exits.
    pub fn expect(&mut self, word: &str, timeout: Duration) -> Reply {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if line.split_whitespace().next() == Some(word) {
                        return Reply(line);
                    }
                    if line.starts_with("ERROR") {
                        panic!("{}: {line}", self.name);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("{}: no `{word}` within {timeout:?}", self.name)
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("{}: exited before answering `{word}`", self.name)
                }
            }
        }
    }

    /// Sends `cmd` and waits for the answer starting with `word`.
    pub fn request(&mut self, cmd: &str, word: &str, timeout: Duration) -> Reply {
        self.send(cmd);
        self.expect(word, timeout)
    }

    /// Polls `cmd` (answered by `word`) until `cond` holds, or panics after `timeout`.
    pub fn wait_for(
        &mut self,
        what: &str,
        cmd: &str,
        word: &str,
        timeout: Duration,
        mut cond: impl FnMut(&Reply) -> bool,
    ) -> Reply {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.request(cmd, word, timeout);
            if cond(&r) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "{}: timed out waiting for {what}; last: {}",
                self.name,
                r.0
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stdin = None;
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An answer line: a word, then `key=value` fields.
#[derive(Debug, Clone)]
pub struct Reply(pub String);

impl Reply {
    pub fn get(&self, key: &str) -> &str {
        self.0
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
            .unwrap_or_else(|| panic!("no `{key}` in {:?}", self.0))
    }

    pub fn num(&self, key: &str) -> u64 {
        self.get(key)
            .parse()
            .unwrap_or_else(|e| panic!("`{key}` in {:?}: {e}", self.0))
    }
}

/// The child side: whether this process is a child, and its role.
pub fn child_role() -> Option<String> {
    std::env::var("TSERCOM_NETNS_ROLE").ok()
}

/// Prints an answer line for the parent.
pub fn answer(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "@@ {line}");
    let _ = out.flush();
}

/// Collapses increasing numbers into `a-b` ranges: `1-3,7-7`.
pub fn ranges(ns: impl IntoIterator<Item = u64>) -> String {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for n in ns {
        match out.last_mut() {
            Some((_, hi)) if *hi + 1 == n => *hi = n,
            _ => out.push((n, n)),
        }
    }
    if out.is_empty() {
        return "none".into();
    }
    out.iter()
        .map(|(a, b)| format!("{a}-{b}"))
        .collect::<Vec<_>>()
        .join(",")
}
