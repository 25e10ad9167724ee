//! [`CallerId`]: the persistent identity of a data source.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use uuid::Uuid;

use crate::wire;

/// The longest text [`CallerId::parse`] looks at; longer input is rejected unread.
pub const MAX_CALLER_ID_LEN: usize = 256;

/// The identity of a data source: a UUID v4, written as canonical hyphenated lowercase text
/// (`"0b5e3c6a-8f2d-4f7e-9c1b-2a3d4e5f6a7b"`).
///
/// Aggregators key every source's data by its `CallerId`. Use [`CallerId::persistent`] so a
/// source keeps its id across restarts, or [`CallerId::random`] for a fresh one.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallerId(Uuid);

/// Why a text or a file is not a valid [`CallerId`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallerIdError {
    /// The text was empty.
    #[error("caller id is empty")]
    Empty,
    /// The text was longer than [`MAX_CALLER_ID_LEN`].
    #[error("caller id is {len} characters long; at most {MAX_CALLER_ID_LEN} are allowed")]
    TooLong {
        /// Length of the rejected text in bytes.
        len: usize,
    },
    /// The text is not a UUID.
    #[error("caller id {text:?} is not a UUID: {source}")]
    NotUuid {
        /// The rejected text.
        text: String,
        /// What the UUID parser found wrong.
        source: uuid::Error,
    },
    /// The text is a UUID, but not version 4.
    #[error("caller id {text:?} is a UUID of version {version}, expected a random (v4) UUID")]
    NotV4 {
        /// The rejected text.
        text: String,
        /// The version found.
        version: usize,
    },
    /// The text is not UTF-8.
    #[error("caller id is not UTF-8 text")]
    NotUtf8,
    /// A proto `CallerId` message was expected but absent.
    #[error("caller id is missing")]
    Missing,
    /// The id file could not be read, created or written.
    #[error("caller id file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The id file exists but does not hold a valid id. It is never replaced silently.
    #[error("caller id file {} is corrupt (delete it to get a new id): {source}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was wrong with its contents.
        source: Box<CallerIdError>,
    },
}

impl CallerId {
    /// A new random id.
    pub fn random() -> Self {
        CallerId(Uuid::new_v4())
    }

    /// Parses canonical or any other RFC 4122 text form of a v4 UUID.
    ///
    /// Rejects empty text, text over [`MAX_CALLER_ID_LEN`] bytes, text that is not a UUID
    /// and UUIDs of other versions. Never panics.
    pub fn parse(text: &str) -> Result<Self, CallerIdError> {
        if text.is_empty() {
            return Err(CallerIdError::Empty);
        }
        if text.len() > MAX_CALLER_ID_LEN {
            return Err(CallerIdError::TooLong { len: text.len() });
        }
        let uuid = Uuid::parse_str(text).map_err(|source| CallerIdError::NotUuid {
            text: text.to_owned(),
            source,
        })?;
        match uuid.get_version_num() {
            4 => Ok(CallerId(uuid)),
            version => Err(CallerIdError::NotV4 {
                text: text.to_owned(),
                version,
            }),
        }
    }

    /// Loads the id stored at `path`, or creates a new random one there.
    ///
    /// Creation is atomic: the id is written to a temporary file beside `path`, synced, and
    /// renamed into place, with mode `0600` on Unix. Two processes racing to create the file
    /// end up with the same id. A file that exists but cannot be read, or does not hold a
    /// valid id, is an error naming the path; it is never replaced.
    pub fn persistent(path: impl AsRef<Path>) -> Result<Self, CallerIdError> {
        let path = path.as_ref();
        match fs::read(path) {
            Ok(bytes) => Self::from_file_bytes(path, &bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Self::create_at(path),
            Err(source) => Err(CallerIdError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }

    fn from_file_bytes(path: &Path, bytes: &[u8]) -> Result<Self, CallerIdError> {
        let corrupt = |source| CallerIdError::Corrupt {
            path: path.to_owned(),
            source: Box::new(source),
        };
        // Line one is the id; an `Identity` file keeps its key on line two.
        let bytes = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
        if bytes.len() > MAX_CALLER_ID_LEN + 2 {
            return Err(corrupt(CallerIdError::TooLong { len: bytes.len() }));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| corrupt(CallerIdError::NotUtf8))?;
        Self::parse(text.trim()).map_err(corrupt)
    }

    fn create_at(path: &Path) -> Result<Self, CallerIdError> {
        let io_err = |source| CallerIdError::Io {
            path: path.to_owned(),
            source,
        };
        let id = CallerId::random();
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let file_name = path.file_name().ok_or_else(|| {
            io_err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a file path",
            ))
        })?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(file_name);
        tmp_name.push(format!(".{}.tmp", Uuid::new_v4().simple()));
        let tmp = dir.join(tmp_name);

        let result = (|| -> io::Result<()> {
            let mut options = fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(&tmp)?;
            writeln!(file, "{id}")?;
            file.sync_all()?;
            drop(file);
            // `hard_link` fails if `path` exists, so a racing creator never overwrites.
            fs::hard_link(&tmp, path)?;
            Ok(())
        })();
        let _ = fs::remove_file(&tmp);
        match result {
            Ok(()) => {
                if let Ok(d) = fs::File::open(&dir) {
                    let _ = d.sync_all();
                }
                Ok(id)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let bytes = fs::read(path).map_err(io_err)?;
                Self::from_file_bytes(path, &bytes)
            }
            Err(e) => Err(io_err(e)),
        }
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    /// Converts to the wire message.
    pub fn to_proto(&self) -> wire::CallerId {
        wire::CallerId {
            id: self.to_string(),
        }
    }

    /// Converts from the wire message, validating its text.
    pub fn from_proto(msg: &wire::CallerId) -> Result<Self, CallerIdError> {
        Self::parse(&msg.id)
    }
}

impl fmt::Display for CallerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for CallerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CallerId({})", self.0.hyphenated())
    }
}

impl FromStr for CallerId {
    type Err = CallerIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl From<CallerId> for wire::CallerId {
    fn from(id: CallerId) -> Self {
        id.to_proto()
    }
}

impl TryFrom<wire::CallerId> for CallerId {
    type Error = CallerIdError;
    fn try_from(msg: wire::CallerId) -> Result<Self, Self::Error> {
        Self::from_proto(&msg)
    }
}

impl TryFrom<Option<wire::CallerId>> for CallerId {
    type Error = CallerIdError;
    fn try_from(msg: Option<wire::CallerId>) -> Result<Self, Self::Error> {
        msg.ok_or(CallerIdError::Missing).and_then(Self::try_from)
    }
}
