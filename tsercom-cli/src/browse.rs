//! `tsercom browse`: the sources of some runtimes, as they come and go.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::Duration;

use tokio::sync::mpsc;
use tsercom_runtime::{DiscoveryEvent, Instance};

use crate::net::NetOpts;
use crate::CliError;

/// One source as shown.
fn row(runtime: &str, i: &Instance) -> [String; 5] {
    let addrs: Vec<String> = i.addresses.iter().map(ToString::to_string).collect();
    [
        i.name.clone().unwrap_or_else(|| "-".into()),
        i.caller_id.map_or("-".into(), |c| c.to_string()),
        addrs.join(","),
        runtime.to_owned(),
        i.schema.map_or("-".into(), |s| format!("{s:016x}")),
    ]
}

fn json(runtime: &str, i: &Instance) -> serde_json::Value {
    serde_json::json!({
        "name": i.name,
        "caller_id": i.caller_id.map(|c| c.to_string()),
        "addresses": i.addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "runtime": runtime,
        "schema": i.schema.map(|s| format!("{s:016x}")),
        "protocol_version": i.protocol_version,
        "instance": i.instance_name,
    })
}

const HEADER: [&str; 5] = ["NAME", "CALLER ID", "ADDRESSES", "RUNTIME", "SCHEMA"];

fn table(rows: &[[String; 5]]) -> String {
    let mut widths = HEADER.map(str::len);
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; 5]| {
        let parts: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(HEADER);
    for r in rows {
        line([&r[0], &r[1], &r[2], &r[3], &r[4]]);
    }
    out
}

/// Browses `runtimes`: with `once`, prints what was found within it and returns.
pub(crate) async fn run(
    net: &NetOpts,
    runtimes: &[String],
    once: Option<Duration>,
    as_json: bool,
) -> Result<(), CliError> {
    let discovery = net.discovery();
    let (tx, mut rx) = mpsc::channel::<(String, DiscoveryEvent)>(256);
    let mut tasks = tokio::task::JoinSet::new();
    for rt in runtimes {
        let mut listener = discovery.listen(rt)?;
        let tx = tx.clone();
        let rt = rt.clone();
        tasks.spawn(async move {
            while let Some(e) = listener.next_event().await {
                if tx.send((rt.clone(), e)).await.is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    // (runtime, instance name) -> instance
    let mut known: BTreeMap<(String, String), Instance> = BTreeMap::new();
    let deadline = once.map(|d| tokio::time::Instant::now() + d);
    let mut stdout = std::io::stdout();
    loop {
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d, rx.recv()).await {
                Ok(e) => e,
                Err(_) => break,
            },
            None => tokio::select! {
                e = rx.recv() => e,
                _ = tokio::signal::ctrl_c() => break,
            },
        };
        let Some((rt, event)) = next else { break };
        let (kind, inst) = match event {
            DiscoveryEvent::Added(i) => ("added", i),
            DiscoveryEvent::Updated(i) => ("updated", i),
            DiscoveryEvent::Removed { instance_name, .. } => {
                let Some(i) = known.remove(&(rt.clone(), instance_name)) else {
                    continue;
                };
                ("removed", i)
            }
            _ => continue,
        };
        if kind != "removed" {
            known.insert((rt.clone(), inst.instance_name.clone()), inst.clone());
        }
        if once.is_some() {
            continue;
        }
        if as_json {
            let mut v = json(&rt, &inst);
            v["event"] = kind.into();
            writeln!(stdout, "{v}")?;
        } else {
            let sign = match kind {
                "added" => '+',
                "removed" => '-',
                _ => '~',
            };
            let r = row(&rt, &inst);
            writeln!(stdout, "{sign} {}", r.join("  "))?;
        }
        stdout.flush()?;
    }
    if once.is_some() {
        if as_json {
            for ((rt, _), i) in &known {
                writeln!(stdout, "{}", json(rt, i))?;
            }
        } else {
            let rows: Vec<[String; 5]> = known.iter().map(|((rt, _), i)| row(rt, i)).collect();
            write!(stdout, "{}", table(&rows))?;
        }
        stdout.flush()?;
    }
    tasks.shutdown().await;
    Ok(())
}
