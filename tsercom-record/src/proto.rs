//! `.proto` text to message descriptors (compiled with `protox`, no `protoc`), and the
//! tsercom schema fingerprint of a descriptor, so a tool that holds only a runtime's
//! `.proto` can decode its samples and speak its stream.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MessageDescriptor};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};
use tsercom_runtime::schema::{
    Definition, EnumDef, FieldDef, FieldType, Label, MessageDef, OneofDef, SchemaRegistry,
};

use crate::RecordError;

/// The longest `.proto` file [`ProtoFiles::add_path`] reads.
const MAX_PROTO_FILE_BYTES: u64 = 4 << 20;

/// A set of `.proto` files in memory, by import path (`"weather.proto"`), that compile
/// together with tsercom's own files (`tsercom/stream.proto`, ...) and protobuf's
/// well-known types, which are always available.
#[derive(Debug, Clone, Default)]
pub struct ProtoFiles {
    files: BTreeMap<String, String>,
}

impl ProtoFiles {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one file's text under its import path.
    pub fn add(&mut self, path: impl Into<String>, text: impl Into<String>) -> &mut Self {
        self.files.insert(path.into(), text.into());
        self
    }

    /// Adds `path`: a `.proto` file (imported by its file name), or a directory whose
    /// `.proto` files (searched recursively) are imported by their path under it.
    pub fn add_path(&mut self, path: &Path) -> Result<&mut Self, RecordError> {
        let io = |source| RecordError::Io {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.is_dir() {
            self.add_dir(path, path, 0)?;
        } else {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            self.add_file(path, name)?;
        }
        Ok(self)
    }

    fn add_dir(&mut self, root: &Path, dir: &Path, depth: u32) -> Result<(), RecordError> {
        if depth > 16 {
            return Ok(());
        }
        let io = |source| RecordError::Io {
            path: dir.to_owned(),
            source,
        };
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        entries.sort();
        for entry in entries {
            if entry.is_dir() {
                self.add_dir(root, &entry, depth + 1)?;
            } else if entry.extension().is_some_and(|e| e == "proto") {
                let rel = entry.strip_prefix(root).unwrap_or(&entry);
                let name = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                self.add_file(&entry, name)?;
            }
        }
        Ok(())
    }

    fn add_file(&mut self, path: &Path, name: String) -> Result<(), RecordError> {
        let io = |source| RecordError::Io {
            path: path.to_owned(),
            source,
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_PROTO_FILE_BYTES {
            return Err(RecordError::Schema(format!(
                "{} is {len} bytes, more than a .proto file may be ({MAX_PROTO_FILE_BYTES})",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        self.files.insert(name, text);
        Ok(())
    }

    /// The import paths of the files added.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// The text of the file at `path`, if added.
    pub fn text(&self, path: &str) -> Option<&str> {
        self.files.get(path).map(String::as_str)
    }

    /// Compiles `paths` (and what they import) into a descriptor pool.
    pub fn compile<'a>(
        &self,
        paths: impl IntoIterator<Item = &'a str>,
    ) -> Result<DescriptorPool, RecordError> {
        let mut chain = ChainFileResolver::new();
        chain.add(Memory(self.files.clone()));
        chain.add(Memory(
            tsercom_runtime::wire::PROTO_FILES
                .iter()
                .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
                .collect(),
        ));
        chain.add(GoogleFileResolver::new());
        let mut compiler = protox::Compiler::with_file_resolver(chain);
        compiler.include_imports(true);
        for path in paths {
            compiler
                .open_file(path)
                .map_err(|e| RecordError::Schema(format!("{path}: {e}")))?;
        }
        Ok(compiler.descriptor_pool())
    }

    /// Every runtime defined by these files: each file that declares a runtime's typed
    /// stream messages (`<package>.DataSample` and `<package>.EventSample`, as
    /// `#[tsercom::runtime]` emits them). A file that does not compile is skipped when it
    /// defines no runtime; one that looks like a runtime's file and does not compile is an
    /// error.
    pub fn runtimes(&self) -> Result<Vec<RuntimeSchema>, RecordError> {
        let mut out = Vec::new();
        for (path, text) in &self.files {
            if !(text.contains("message DataSample") && text.contains("message EventSample")) {
                continue;
            }
            let pool = self.compile([path.as_str()])?;
            let Some(file) = pool.get_file_by_name(path) else {
                continue;
            };
            let package = file.package_name().to_owned();
            let payload = |msg: &str| -> Option<MessageDescriptor> {
                let sample = pool.get_message_by_name(&format!("{package}.{msg}"))?;
                match sample.get_field_by_name("payload")?.kind() {
                    Kind::Message(m) => Some(m),
                    _ => None,
                }
            };
            if let (Some(data), Some(event)) = (payload("DataSample"), payload("EventSample")) {
                out.push(RuntimeSchema {
                    package,
                    path: path.clone(),
                    text: text.clone(),
                    data,
                    event,
                });
            }
        }
        Ok(out)
    }

    /// The runtime of protobuf package `package`, see [`runtimes`](Self::runtimes).
    pub fn runtime(&self, package: &str) -> Result<RuntimeSchema, RecordError> {
        let all = self.runtimes()?;
        let names: Vec<String> = all.iter().map(|r| r.package.clone()).collect();
        all.into_iter()
            .find(|r| r.package == package)
            .ok_or_else(|| {
                RecordError::Schema(format!(
                    "no .proto defines the runtime of package `{package}` (runtimes found: {})",
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                ))
            })
    }
}

/// Files served from memory.
struct Memory(BTreeMap<String, String>);

impl FileResolver for Memory {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match self.0.get(name) {
            Some(text) => File::from_source(name, text),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

/// A runtime as its `.proto` describes it: its name, data and event messages.
#[derive(Debug, Clone)]
pub struct RuntimeSchema {
    /// The runtime's protobuf package (its name too, unless `#[tsercom::runtime]` was
    /// given another `name`, which the `.proto` does not record).
    pub package: String,
    /// The import path of its `.proto` file.
    pub path: String,
    /// The `.proto` text.
    pub text: String,
    /// The data message (sources to aggregators).
    pub data: MessageDescriptor,
    /// The event message (aggregators to sources).
    pub event: MessageDescriptor,
}

impl RuntimeSchema {
    /// A runtime's schema from the texts a peer's Hello carries (`data_schema_desc`,
    /// `event_schema_desc`: `SchemaRegistry::schema_text`) and the full names of its data
    /// and event messages (`data_type`, `event_type`). The texts are rendered as `.proto`
    /// files (one per package, with their imports) and compiled with `protox`; [`text`]
    /// holds those files, the data message's first.
    ///
    /// [`text`]: RuntimeSchema::text
    ///
    /// ```
    /// use tsercom_record::RuntimeSchema;
    ///
    /// let rt = RuntimeSchema::from_schema_texts(
    ///     "lab.Reading",
    ///     "package lab;\nmessage Reading {\n  double celsius = 1;\n}\n",
    ///     "lab.NoEvent",
    ///     "package lab;\nmessage NoEvent {\n}\n",
    /// )?;
    /// assert_eq!(rt.package, "lab");
    /// assert_eq!(rt.data.full_name(), "lab.Reading");
    /// assert!(rt.text.contains("double celsius = 1;"));
    /// # Ok::<(), tsercom_record::RecordError>(())
    /// ```
    pub fn from_schema_texts(
        data_type: &str,
        data_text: &str,
        event_type: &str,
        event_text: &str,
    ) -> Result<RuntimeSchema, RecordError> {
        let mut registry = SchemaRegistry::new();
        for (what, text) in [("data", data_text), ("event", event_text)] {
            let parsed = tsercom_runtime::schema::parse(text)
                .map_err(|e| RecordError::Schema(format!("the {what} schema: {e}")))?;
            for def in parsed.definitions() {
                match def {
                    Definition::Message(m) => registry.add_message(m.clone()),
                    Definition::Enum(e) => registry.add_enum(e.clone()),
                }
            }
        }
        if let Some(c) = registry.conflicts().first() {
            return Err(RecordError::Schema(format!(
                "the data and event schemas define `{}` differently",
                c.full_name
            )));
        }
        registry.set_generator("tsercom from the schemas in a peer's Hello");
        let package = tsercom_runtime::schema::package_of(data_type).to_owned();
        let path = tsercom_runtime::schema::file_of_package(&package);
        let mut rendered = registry.render_files();
        // The data message's file first: it is the runtime's.
        rendered.sort_by_key(|(p, _)| *p != path);
        let mut files = ProtoFiles::new();
        for (p, text) in &rendered {
            files.add(p.clone(), text.clone());
        }
        let pool = files.compile(rendered.iter().map(|(p, _)| p.as_str()))?;
        let message = |what: &str, name: &str| {
            pool.get_message_by_name(name).ok_or_else(|| {
                RecordError::Schema(format!("the {what} schema does not define `{name}`"))
            })
        };
        let text = match rendered.as_slice() {
            [(_, only)] => only.clone(),
            many => many
                .iter()
                .map(|(p, t)| format!("// ---- {p} ----\n{t}"))
                .collect::<Vec<_>>()
                .join("\n"),
        };
        Ok(RuntimeSchema {
            data: message("data", data_type)?,
            event: message("event", event_type)?,
            package,
            path,
            text,
        })
    }

    /// The fingerprint of the data schema, as sources advertise it (TXT key `schema`).
    pub fn data_fingerprint(&self) -> Result<u64, RecordError> {
        fingerprint(&self.data)
    }

    /// The fingerprint of the event schema.
    pub fn event_fingerprint(&self) -> Result<u64, RecordError> {
        fingerprint(&self.event)
    }
}

/// The tsercom fingerprint of `message` and every type it references: the value
/// `Series::fingerprint` has for the Rust type the message was generated from.
pub fn fingerprint(message: &MessageDescriptor) -> Result<u64, RecordError> {
    let mut registry = SchemaRegistry::new();
    let mut seen = BTreeSet::new();
    let mut todo = vec![top_level(message)];
    while let Some(msg) = todo.pop() {
        if !seen.insert(msg.full_name().to_owned()) {
            continue;
        }
        let def = message_def(&msg, &mut |kind| match kind {
            Kind::Message(m) if !is_external(m.full_name()) => todo.push(top_level(&m)),
            Kind::Enum(e) => {
                let name = e.full_name().to_owned();
                if !seen.contains(&name) && e.parent_message().is_none() {
                    seen.insert(name.clone());
                    registry.add_enum(EnumDef {
                        full_name: name,
                        values: e
                            .values()
                            .map(|v| (v.name().to_owned(), v.number()))
                            .collect(),
                    });
                }
            }
            _ => {}
        })?;
        registry.add_message(def);
    }
    Ok(registry.fingerprint(message.full_name()))
}

/// Types tsercom's schema model refers to without defining them.
fn is_external(full_name: &str) -> bool {
    full_name.starts_with("google.protobuf.") || full_name == "tsercom.CallerId"
}

fn top_level(message: &MessageDescriptor) -> MessageDescriptor {
    let mut m = message.clone();
    while let Some(parent) = m.parent_message() {
        m = parent;
    }
    m
}

fn message_def(
    msg: &MessageDescriptor,
    visit: &mut dyn FnMut(Kind),
) -> Result<MessageDef, RecordError> {
    let mut def = MessageDef::new(msg.full_name());
    let proto = msg.descriptor_proto();
    for range in &proto.reserved_range {
        let (lo, hi) = (range.start.unwrap_or(0), range.end.unwrap_or(0));
        def.reserved_tags
            .push((to_u32(lo)?, to_u32(hi.saturating_sub(1))?));
    }
    def.reserved_names = proto.reserved_name.clone();
    for nested in msg.child_messages().filter(|m| !m.is_map_entry()) {
        def.nested.push(message_def(&nested, visit)?);
    }
    for field in msg.fields() {
        match field.containing_oneof() {
            Some(oneof) if !oneof.is_synthetic() => continue,
            _ => {}
        }
        let label = if field.is_list() {
            Label::Repeated
        } else if field.field_descriptor_proto().proto3_optional() {
            Label::Optional
        } else {
            Label::Implicit
        };
        def.fields.push(FieldDef::new(
            field.name(),
            field.number(),
            label,
            field_type(&field, visit)?,
        ));
    }
    for oneof in msg.oneofs().filter(|o| !o.is_synthetic()) {
        let mut fields = Vec::new();
        for field in oneof.fields() {
            fields.push(FieldDef::new(
                field.name(),
                field.number(),
                Label::Implicit,
                field_type(&field, visit)?,
            ));
        }
        def.oneofs.push(OneofDef {
            name: oneof.name().to_owned(),
            fields,
        });
    }
    Ok(def)
}

fn to_u32(n: i32) -> Result<u32, RecordError> {
    u32::try_from(n).map_err(|_| RecordError::Schema(format!("invalid field number {n}")))
}

fn field_type(
    field: &FieldDescriptor,
    visit: &mut dyn FnMut(Kind),
) -> Result<FieldType, RecordError> {
    if field.is_map() {
        let Kind::Message(entry) = field.kind() else {
            return Err(RecordError::Schema(format!(
                "map field {} has no entry",
                field.full_name()
            )));
        };
        let (k, v) = (entry.map_entry_key_field(), entry.map_entry_value_field());
        let FieldType::Scalar(key) = kind_type(k.kind(), visit) else {
            return Err(RecordError::Schema(format!(
                "map field {} has a key that is not a scalar",
                field.full_name()
            )));
        };
        return Ok(FieldType::Map(key, Box::new(kind_type(v.kind(), visit))));
    }
    Ok(kind_type(field.kind(), visit))
}

fn kind_type(kind: Kind, visit: &mut dyn FnMut(Kind)) -> FieldType {
    let scalar = match &kind {
        Kind::Double => "double",
        Kind::Float => "float",
        Kind::Int32 => "int32",
        Kind::Int64 => "int64",
        Kind::Uint32 => "uint32",
        Kind::Uint64 => "uint64",
        Kind::Sint32 => "sint32",
        Kind::Sint64 => "sint64",
        Kind::Fixed32 => "fixed32",
        Kind::Fixed64 => "fixed64",
        Kind::Sfixed32 => "sfixed32",
        Kind::Sfixed64 => "sfixed64",
        Kind::Bool => "bool",
        Kind::String => "string",
        Kind::Bytes => "bytes",
        Kind::Message(m) => {
            let name = m.full_name().to_owned();
            visit(kind);
            return FieldType::Named(name);
        }
        Kind::Enum(e) => {
            let name = e.full_name().to_owned();
            visit(kind);
            return FieldType::Named(name);
        }
    };
    FieldType::Scalar(scalar)
}
