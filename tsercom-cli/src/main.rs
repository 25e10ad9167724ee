//! The `tsercom` command: browse the sources on the network, print a source's schema,
//! tail its samples as JSON lines, record every source of a runtime to Parquet.
//!
//! Every failure is one line on stderr (`tsercom: error: ...`) and a non-zero exit.

mod browse;
mod net;
mod record;
mod stream;
mod tail;
mod telemetry;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::net::{NetOpts, ProtoOpts, Target, TlsOpts};

/// Operate tsercom streams: browse sources, print schemas, tail and record samples.
#[derive(Debug, Parser)]
#[command(name = "tsercom", version, about)]
struct Cli {
    #[command(flatten)]
    net: NetOpts,
    /// Serve metrics in the Prometheus text format on this address (e.g. 127.0.0.1:9184).
    #[arg(long, value_name = "ADDR", global = true)]
    metrics: Option<std::net::SocketAddr>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Lists the sources of the given runtimes found over mDNS, as they come and go.
    Browse {
        /// Runtime names (mDNS service `_<runtime>._tcp.local.`).
        #[arg(required = true, value_name = "RUNTIME")]
        runtimes: Vec<String>,
        /// Print the sources found within `--wait`, then exit.
        #[arg(long)]
        once: bool,
        /// How long `--once` listens.
        #[arg(long, value_name = "SECS", default_value_t = 2.0)]
        wait: f64,
        /// One JSON object per line instead of a table (with `--once`: one per source;
        /// live: `{"event":"added"|"updated"|"removed", ...}`).
        #[arg(long)]
        json: bool,
    },
    /// Prints the schema of a source as `.proto` text: its data and event messages, as its
    /// Hello states them (or, with `--proto`, the file given whose data schema has the
    /// fingerprint the source advertises).
    Schema {
        /// `RUNTIME`, `RUNTIME/NAME` or `RUNTIME/CALLER_ID`.
        source: Target,
        #[command(flatten)]
        proto: ProtoOpts,
        #[command(flatten)]
        tls: TlsOpts,
        /// How long to look for the source.
        #[arg(long, value_name = "SECS", default_value_t = 5.0)]
        wait: f64,
    },
    /// Connects to a source (or every source of a runtime) as an aggregator and prints
    /// its samples as JSON lines.
    Tail {
        /// `RUNTIME`, `RUNTIME/NAME` or `RUNTIME/CALLER_ID`.
        target: Target,
        #[command(flatten)]
        proto: ProtoOpts,
        #[command(flatten)]
        tls: TlsOpts,
        /// Exit after this many samples.
        #[arg(short = 'n', long, value_name = "N")]
        count: Option<u64>,
        /// Exit after this long.
        #[arg(long, value_name = "SECS")]
        duration: Option<f64>,
    },
    /// Records every source of a runtime to Parquet files until Ctrl-C.
    Record {
        /// `RUNTIME` (or `RUNTIME/NAME`, `RUNTIME/CALLER_ID` for one source).
        target: Target,
        /// The directory of the files.
        #[arg(short = 'o', long = "output", value_name = "DIR")]
        dir: std::path::PathBuf,
        #[command(flatten)]
        proto: ProtoOpts,
        #[command(flatten)]
        tls: TlsOpts,
        /// Start a new file after this many megabytes.
        #[arg(long, value_name = "MB", default_value_t = 256)]
        rotate_mb: u64,
        /// Start a new file after this many seconds.
        #[arg(long, value_name = "SECS")]
        rotate_secs: Option<u64>,
        /// Stop after this long (as Ctrl-C would).
        #[arg(long, value_name = "SECS")]
        duration: Option<f64>,
    },
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// The arguments do not describe something that can be done.
    #[error("{0}")]
    Usage(String),
    /// Nothing matched on the network.
    #[error("{0}")]
    NotFound(String),
    /// A source failed or broke the protocol.
    #[error("source: {0}")]
    Source(String),
    /// A source refused us for a reason retrying cannot fix.
    #[error("refused: {0}")]
    Refused(String),
    #[error(transparent)]
    Discovery(#[from] tsercom_runtime::DiscoveryError),
    #[error(transparent)]
    Transport(#[from] tsercom_runtime::TransportError),
    #[error(transparent)]
    Tls(#[from] tsercom_runtime::transport::TlsError),
    #[error(transparent)]
    Record(#[from] tsercom_record::RecordError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub(crate) fn secs(s: f64) -> Result<Duration, CliError> {
    Duration::try_from_secs_f64(s).map_err(|e| CliError::Usage(format!("{s} seconds: {e}")))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&CliError::Io(e)),
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &CliError) -> ExitCode {
    let text = e.to_string().replace('\n', " ");
    eprintln!("tsercom: error: {text}");
    ExitCode::FAILURE
}

async fn run(cli: Cli) -> Result<(), CliError> {
    if let Some(addr) = cli.metrics {
        telemetry::serve_prometheus(addr)?;
    }
    match cli.command {
        Command::Browse {
            runtimes,
            once,
            wait,
            json,
        } => {
            browse::run(
                &cli.net,
                &runtimes,
                once.then(|| secs(wait)).transpose()?,
                json,
            )
            .await
        }
        Command::Schema {
            source,
            proto,
            tls,
            wait,
        } => {
            let instance = net::find(&cli.net, &source, secs(wait)?).await?;
            print!("{}", schema_text(&source, &instance, &proto, &tls).await?);
            Ok(())
        }
        Command::Tail {
            target,
            proto,
            tls,
            count,
            duration,
        } => {
            let given = proto.schemas()?;
            let duration = duration.map(secs).transpose()?;
            tail::run(cli.net, tls.client()?, target, given, count, duration).await
        }
        Command::Record {
            target,
            dir,
            proto,
            tls,
            rotate_mb,
            rotate_secs,
            duration,
        } => {
            let given = proto.schemas()?;
            let opts = record::Options {
                dir,
                rotate_bytes: rotate_mb.saturating_mul(1 << 20),
                rotate_age: rotate_secs.map(Duration::from_secs),
                duration: duration.map(secs).transpose()?,
            };
            record::run(cli.net, tls.client()?, target, given, opts).await
        }
    }
}

/// The `.proto` text of `instance`'s schema: the file given with `--proto` for its
/// fingerprint, or what its Hello states.
async fn schema_text(
    source: &Target,
    instance: &tsercom_runtime::Instance,
    proto: &ProtoOpts,
    tls: &TlsOpts,
) -> Result<String, CliError> {
    let Some(given) = proto.schemas()? else {
        let speaks = stream::Speaks::adopt(&source.runtime);
        let known = stream::describe(&speaks, &instance.addresses, tls.client()?).await?;
        return Ok(known.schema.text.clone());
    };
    let Some(fp) = instance.schema else {
        return Err(CliError::NotFound(format!(
            "source {} advertises no schema fingerprint",
            net::label(instance)
        )));
    };
    match given.get(&fp) {
        Some(known) => Ok(known.schema.text.clone()),
        None => Err(CliError::NotFound(format!(
            "source {} advertises schema {fp:016x}; no .proto given has it (found: {})",
            net::label(instance),
            given
                .keys()
                .map(|k| format!("{k:016x}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}
