//! The [`Recorder`]: samples in, Parquet files out, rotated by size or age.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::builder::{
    BooleanBuilder, StringBuilder, TimestampNanosecondBuilder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use tsercom_runtime::data::Timestamped;
use tsercom_runtime::{CallerId, Series, Timestamp};

use crate::columns::{self, Builder, ColumnPlan};
use crate::proto::ProtoFiles;
use crate::RecordError;

/// Where and how a [`Recorder`] writes. Made by [`Recorder::builder`].
#[derive(Debug, Clone)]
pub struct RecorderBuilder {
    dir: PathBuf,
    message: MessageDescriptor,
    prefix: String,
    max_file_bytes: u64,
    max_file_age: Option<Duration>,
    batch_rows: usize,
}

impl RecorderBuilder {
    /// The start of every file name (default: the message's package, or `"tsercom"`).
    /// Files are named `<prefix>-<UTC start time>-<index>.parquet`.
    pub fn file_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Starts a new file once the current one holds at least this many bytes (default
    /// 256 MiB). Checked after each row batch, so files overshoot by at most one batch.
    pub fn max_file_bytes(mut self, bytes: u64) -> Self {
        self.max_file_bytes = bytes.max(1);
        self
    }

    /// Starts a new file once the current one is this old (default: never). Checked when
    /// a sample arrives.
    pub fn max_file_age(mut self, age: Duration) -> Self {
        self.max_file_age = Some(age);
        self
    }

    /// Rows buffered in memory before they are encoded (default 16384): also the size of
    /// a Parquet row group's pages.
    pub fn batch_rows(mut self, rows: usize) -> Self {
        self.batch_rows = rows.max(1);
        self
    }

    /// Creates the directory if needed and returns the recorder. No file is created
    /// before the first sample.
    pub fn build(self) -> Result<Recorder, RecordError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| RecordError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let plans = columns::plan(&self.message);
        let mut fields = vec![
            Field::new("caller_id", DataType::Utf8, false),
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                false,
            ),
            Field::new("seq", DataType::UInt64, false),
            Field::new("synchronized", DataType::Boolean, false),
        ];
        fields.extend(plans.iter().map(ColumnPlan::field));
        let schema = Arc::new(Schema::new(fields));
        let started = format_file_time(Timestamp::now());
        let rows = self.batch_rows;
        Ok(Recorder {
            builders: Builders::new(&plans, rows),
            plans,
            schema,
            config: self,
            started,
            file: None,
            next_index: 1,
            files: Vec::new(),
            rows_total: 0,
            bytes_closed: 0,
            caller_text: None,
        })
    }
}

/// Writes samples of one message type to Parquet files in a directory: one row per
/// sample, the columns `caller_id`, `time` (UTC nanoseconds, aggregator clock), `seq`,
/// `synchronized`, then the message's fields as the [crate docs](crate) map them.
///
/// A file is written as `<name>.parquet.partial` and renamed to `<name>.parquet` when it
/// is complete (rotation or [`finish`](Self::finish)), so a reader never sees half a file.
/// Call [`finish`](Self::finish) to write what is buffered; dropping a recorder finishes it
/// too, logging rather than returning an error.
pub struct Recorder {
    plans: Vec<ColumnPlan>,
    schema: SchemaRef,
    builders: Builders,
    config: RecorderBuilder,
    started: String,
    file: Option<OpenFile>,
    next_index: u32,
    files: Vec<PathBuf>,
    rows_total: u64,
    bytes_closed: u64,
    /// The text of the last caller id recorded (samples come in runs of one source).
    caller_text: Option<(CallerId, String)>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("dir", &self.config.dir)
            .field("message", &self.config.message.full_name())
            .field("rows", &self.rows_total)
            .finish_non_exhaustive()
    }
}

struct OpenFile {
    writer: ArrowWriter<File>,
    partial: PathBuf,
    done: PathBuf,
    opened: Instant,
}

struct Builders {
    caller: StringBuilder,
    time: TimestampNanosecondBuilder,
    seq: UInt64Builder,
    synchronized: BooleanBuilder,
    data: Vec<Builder>,
    rows: usize,
}

impl Builders {
    fn new(plans: &[ColumnPlan], capacity: usize) -> Self {
        Builders {
            caller: StringBuilder::with_capacity(capacity, capacity * 36),
            time: TimestampNanosecondBuilder::with_capacity(capacity).with_timezone("UTC"),
            seq: UInt64Builder::with_capacity(capacity),
            synchronized: BooleanBuilder::with_capacity(capacity),
            data: plans.iter().map(|p| p.builder(capacity)).collect(),
            rows: 0,
        }
    }
}

/// What a finished [`Recorder`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordSummary {
    /// The files, in the order they were written.
    pub files: Vec<PathBuf>,
    /// Samples written.
    pub rows: u64,
    /// Bytes written (all files).
    pub bytes: u64,
}

impl Recorder {
    /// A recorder of `message` samples into `dir`.
    pub fn builder(dir: impl Into<PathBuf>, message: MessageDescriptor) -> RecorderBuilder {
        let package = message.package_name();
        let prefix = if package.is_empty() {
            "tsercom".to_owned()
        } else {
            package.replace('.', "_")
        };
        RecorderBuilder {
            dir: dir.into(),
            message,
            prefix,
            max_file_bytes: 256 << 20,
            max_file_age: None,
            batch_rows: 16_384,
        }
    }

    /// A recorder of the series type `D` (e.g. a runtime's data type) into `dir`: its
    /// `.proto` is compiled from `D::proto_files()`.
    pub fn for_series<D: Series>(dir: impl Into<PathBuf>) -> Result<RecorderBuilder, RecordError> {
        let mut files = ProtoFiles::new();
        for (path, text) in D::proto_files() {
            files.add(path, text);
        }
        let own = D::proto_path();
        let pool = files.compile([own.as_str()])?;
        let message = pool.get_message_by_name(D::MESSAGE_NAME).ok_or_else(|| {
            RecordError::Schema(format!("{own} does not define {}", D::MESSAGE_NAME))
        })?;
        Ok(Recorder::builder(dir, message))
    }

    /// The Arrow schema of the files.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Records one sample whose value is an encoded message of the recorder's type.
    /// A payload that does not decode is an error and nothing is recorded for it.
    pub fn record_encoded(
        &mut self,
        caller: CallerId,
        time: Timestamp,
        seq: u64,
        synchronized: bool,
        payload: &[u8],
    ) -> Result<(), RecordError> {
        let msg = DynamicMessage::decode(self.config.message.clone(), payload).map_err(|e| {
            RecordError::Decode {
                caller,
                seq,
                reason: e.to_string(),
            }
        })?;
        self.record_message(caller, time, seq, synchronized, &msg)
    }

    /// Records one sample of a typed aggregator (encoded, then decoded as the recorder's
    /// message type).
    pub fn record<D: prost::Message>(
        &mut self,
        caller: CallerId,
        sample: &Timestamped<D>,
    ) -> Result<(), RecordError> {
        let payload = sample.value.encode_to_vec();
        self.record_encoded(
            caller,
            sample.time,
            sample.seq,
            sample.synchronized,
            &payload,
        )
    }

    /// Records one decoded sample.
    pub fn record_message(
        &mut self,
        caller: CallerId,
        time: Timestamp,
        seq: u64,
        synchronized: bool,
        msg: &DynamicMessage,
    ) -> Result<(), RecordError> {
        if let Some(age) = self.config.max_file_age {
            if self
                .file
                .as_ref()
                .is_some_and(|f| f.opened.elapsed() >= age)
            {
                self.flush()?;
                self.close_file()?;
            }
        }
        let b = &mut self.builders;
        match &self.caller_text {
            Some((id, text)) if *id == caller => b.caller.append_value(text),
            _ => {
                let text = caller.to_string();
                b.caller.append_value(&text);
                self.caller_text = Some((caller, text));
            }
        }
        b.time.append_value(time.as_nanos());
        b.seq.append_value(seq);
        b.synchronized.append_value(synchronized);
        for (plan, builder) in self.plans.iter().zip(&mut b.data) {
            plan.append(msg, builder);
        }
        b.rows += 1;
        self.rows_total += 1;
        if b.rows >= self.config.batch_rows {
            self.flush()?;
        }
        Ok(())
    }

    /// Samples recorded so far (buffered or written).
    pub fn rows(&self) -> u64 {
        self.rows_total
    }

    /// Bytes written so far, including the open file's encoded but unwritten row group.
    pub fn bytes(&self) -> u64 {
        self.bytes_closed
            + self.file.as_ref().map_or(0, |f| {
                (f.writer.bytes_written() + f.writer.in_progress_size()) as u64
            })
    }

    /// Encodes the buffered rows into the open file (opening one if needed), and rotates
    /// when the file has reached its size.
    pub fn flush(&mut self) -> Result<(), RecordError> {
        if self.builders.rows == 0 {
            return Ok(());
        }
        let b = &mut self.builders;
        let mut arrays: Vec<ArrayRef> = vec![
            Arc::new(b.caller.finish()),
            Arc::new(b.time.finish()),
            Arc::new(b.seq.finish()),
            Arc::new(b.synchronized.finish()),
        ];
        arrays.extend(b.data.iter_mut().map(Builder::finish));
        b.rows = 0;
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), arrays)
            .map_err(|e| RecordError::Parquet(e.to_string()))?;
        if self.file.is_none() {
            self.open_file()?;
        }
        let max = self.config.max_file_bytes;
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        file.writer
            .write(&batch)
            .map_err(|e| RecordError::Parquet(e.to_string()))?;
        if (file.writer.bytes_written() + file.writer.in_progress_size()) as u64 >= max {
            self.close_file()?;
        }
        Ok(())
    }

    fn open_file(&mut self) -> Result<(), RecordError> {
        let name = format!(
            "{}-{}-{:05}.parquet",
            self.config.prefix, self.started, self.next_index
        );
        self.next_index += 1;
        let done = self.config.dir.join(&name);
        let partial = self.config.dir.join(format!("{name}.partial"));
        let io = |source| RecordError::Io {
            path: partial.clone(),
            source,
        };
        let out = File::create(&partial).map_err(io)?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_size(1 << 20)
            .set_created_by(format!("tsercom-record {}", env!("CARGO_PKG_VERSION")))
            .build();
        let writer = ArrowWriter::try_new(out, Arc::clone(&self.schema), Some(props))
            .map_err(|e| RecordError::Parquet(e.to_string()))?;
        tracing::debug!(file = %done.display(), "recording to a new file");
        self.file = Some(OpenFile {
            writer,
            partial,
            done,
            opened: Instant::now(),
        });
        Ok(())
    }

    fn close_file(&mut self) -> Result<(), RecordError> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        file.writer
            .close()
            .map_err(|e| RecordError::Parquet(e.to_string()))?;
        let io = |source| RecordError::Io {
            path: file.done.clone(),
            source,
        };
        self.bytes_closed += std::fs::metadata(&file.partial).map_err(io)?.len();
        std::fs::rename(&file.partial, &file.done).map_err(io)?;
        self.files.push(file.done);
        Ok(())
    }

    /// Writes everything buffered, completes the open file and returns what was written.
    pub fn finish(mut self) -> Result<RecordSummary, RecordError> {
        self.finish_files()
    }

    fn finish_files(&mut self) -> Result<RecordSummary, RecordError> {
        self.flush()?;
        self.close_file()?;
        Ok(RecordSummary {
            files: std::mem::take(&mut self.files),
            rows: self.rows_total,
            bytes: self.bytes_closed,
        })
    }

    /// The directory files are written to.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if self.builders.rows > 0 || self.file.is_some() {
            if let Err(error) = self.finish_files() {
                tracing::error!(%error, "recorder dropped: finishing its last file failed");
            }
        }
    }
}

/// `YYYYMMDDTHHMMSSZ` for file names.
fn format_file_time(t: Timestamp) -> String {
    let text = tsercom_runtime::discovery::format_published_on(t);
    // "YYYY-MM-DD HH:MM:SS.ffffff"
    let digits: String = text.chars().take(19).filter(char::is_ascii_digit).collect();
    if digits.len() == 14 {
        format!("{}T{}Z", &digits[..8], &digits[8..])
    } else {
        digits
    }
}
