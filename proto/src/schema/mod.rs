//! Schema descriptions of series types: a registry of protobuf message and enum definitions,
//! rendered to `.proto` text and hashed to a stable fingerprint.
//!
//! Every `#[tsercom::series]` type adds its definition, and the definitions of the types it
//! references, to a [`SchemaRegistry`] (`tsercom::Series::describe`).
//! Definitions are deduplicated by full name, so a registry can collect many series types
//! (e.g. every type of a `#[tsercom::runtime]` module) and render them as one set of files.
//!
//! ```
//! use tsercom_proto::schema::{FieldDef, FieldType, Label, MessageDef, SchemaRegistry};
//!
//! let mut reg = SchemaRegistry::new();
//! let mut msg = MessageDef::new("weather.Reading");
//! msg.fields.push(FieldDef::new("celsius", 1, Label::Implicit, FieldType::scalar("double")));
//! reg.add_message(msg);
//! let files = reg.render_files();
//! assert_eq!(files[0].0, "weather.proto");
//! assert!(files[0].1.contains("double celsius = 1;"));
//! ```

use std::any::TypeId;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

pub mod compat;
mod parse;
mod render;

pub use parse::{parse, ParseError, SCALARS};
use render::{render_comment, render_enum, render_message, render_service};

pub use crate::names::Fnv1a64;

/// The path of the well-known `google.protobuf.Timestamp` import.
pub const TIMESTAMP_IMPORT: &str = "google/protobuf/timestamp.proto";
/// The path of tsercom's `CallerId` message file (see [`crate::PROTO_FILES`]).
pub const CALLER_ID_IMPORT: &str = "tsercom/caller_id.proto";
/// The path of tsercom's streaming protocol file (see [`crate::PROTO_FILES`]).
pub const STREAM_IMPORT: &str = "tsercom/stream.proto";
/// The path of tsercom's time messages file (`tsercom.ServerTimestamp`).
pub const TIME_IMPORT: &str = "tsercom/time.proto";
/// The path of tsercom's tensor messages file (`tsercom.TensorInitializer`, ...).
pub const TENSOR_IMPORT: &str = "tsercom/tensor.proto";

/// How a field is labelled in proto3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Label {
    /// No label: implicit presence for scalars, explicit presence for messages.
    Implicit,
    /// `optional`: explicit presence.
    Optional,
    /// `repeated`.
    Repeated,
}

/// The type of a field.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FieldType {
    /// A scalar type such as `double`, `sint64`, `string` or `bytes`.
    Scalar(&'static str),
    /// A message or enum, by full name (`"weather.Reading"`, `"google.protobuf.Timestamp"`).
    Named(String),
    /// `map<key, value>`: the key is a scalar.
    Map(&'static str, Box<FieldType>),
}

impl FieldType {
    /// A scalar type.
    pub fn scalar(name: &'static str) -> Self {
        FieldType::Scalar(name)
    }
}

/// One field of a message (or of a oneof).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldDef {
    /// The field name in the schema.
    pub name: String,
    /// The field number.
    pub tag: u32,
    /// The label. Ignored inside a oneof.
    pub label: Label,
    /// The type.
    pub ty: FieldType,
}

impl FieldDef {
    /// A field.
    pub fn new(name: impl Into<String>, tag: u32, label: Label, ty: FieldType) -> Self {
        FieldDef {
            name: name.into(),
            tag,
            label,
            ty,
        }
    }
}

/// A `oneof` group of fields.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OneofDef {
    /// The oneof name.
    pub name: String,
    /// Its fields.
    pub fields: Vec<FieldDef>,
}

/// A message definition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageDef {
    /// Full name, `package.Name` (or `package.Outer.Inner` for a nested message).
    pub full_name: String,
    /// Plain fields.
    pub fields: Vec<FieldDef>,
    /// Oneof groups.
    pub oneofs: Vec<OneofDef>,
    /// Messages defined inside this one.
    pub nested: Vec<MessageDef>,
    /// Reserved field numbers, as inclusive ranges.
    pub reserved_tags: Vec<(u32, u32)>,
    /// Reserved field names.
    pub reserved_names: Vec<String>,
    /// A comment rendered above the message, one `//` line per line. Not part of the
    /// [`canonical`](SchemaRegistry::canonical) text.
    pub comment: Option<String>,
}

impl MessageDef {
    /// An empty message.
    pub fn new(full_name: impl Into<String>) -> Self {
        MessageDef {
            full_name: full_name.into(),
            fields: Vec::new(),
            oneofs: Vec::new(),
            nested: Vec::new(),
            reserved_tags: Vec::new(),
            reserved_names: Vec::new(),
            comment: None,
        }
    }

    fn short_name(&self) -> &str {
        short_name(&self.full_name)
    }
}

/// An enum definition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EnumDef {
    /// Full name, `package.Name`.
    pub full_name: String,
    /// Values: name and number. The first is zero.
    pub values: Vec<(String, i32)>,
}

/// One rpc method of a service.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MethodDef {
    /// The method name, e.g. `"GetReading"`.
    pub name: String,
    /// Full name of the request message.
    pub request: String,
    /// Full name of the response message.
    pub response: String,
    /// Whether the client sends a stream.
    pub client_streaming: bool,
    /// Whether the server answers with a stream.
    pub server_streaming: bool,
}

/// A service definition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceDef {
    /// Full name, `package.Name`.
    pub full_name: String,
    /// A comment rendered above the service, one `//` line per line.
    pub comment: Option<String>,
    /// Its methods, in order.
    pub methods: Vec<MethodDef>,
}

/// A top-level definition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Definition {
    /// A message.
    Message(MessageDef),
    /// An enum.
    Enum(EnumDef),
}

impl Definition {
    /// The full name.
    pub fn full_name(&self) -> &str {
        match self {
            Definition::Message(m) => &m.full_name,
            Definition::Enum(e) => &e.full_name,
        }
    }
}

/// Two different definitions were registered under one full name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The full name.
    pub full_name: String,
    /// The definition registered first (the one kept).
    pub first: Box<Definition>,
    /// The other one.
    pub second: Box<Definition>,
}

/// Collects definitions, deduplicated by full name, and renders them.
#[derive(Debug, Clone, Default)]
pub struct SchemaRegistry {
    defs: BTreeMap<String, Definition>,
    in_progress: BTreeSet<String>,
    owners: BTreeMap<String, TypeId>,
    imports: BTreeSet<&'static str>,
    /// Definitions that a protocol file defines: imported, not rendered.
    external: BTreeMap<String, &'static str>,
    conflicts: Vec<Conflict>,
    services: Vec<ServiceDef>,
    generator: Option<&'static str>,
}

fn short_name(full: &str) -> &str {
    full.rsplit('.').next().unwrap_or(full)
}

/// The package of a top-level full name (`"a.b.Name"` -> `"a.b"`).
pub fn package_of(full: &str) -> &str {
    full.rsplit_once('.').map(|(p, _)| p).unwrap_or("")
}

/// The file a package's definitions are rendered into: `"a.b"` -> `"a/b.proto"`.
pub fn file_of_package(package: &str) -> String {
    if package.is_empty() {
        "series.proto".to_owned()
    } else {
        format!("{}.proto", package.replace('.', "/"))
    }
}

/// The protocol files of [`crate::PROTO_FILES`] that `texts` import, directly or through
/// one another, as `(path, text)` in the order of [`crate::PROTO_FILES`] (imported files
/// first).
pub fn protocol_imports<'a>(
    texts: impl IntoIterator<Item = &'a str>,
) -> Vec<(&'static str, &'static str)> {
    fn imports(text: &str) -> impl Iterator<Item = &str> {
        text.lines().filter_map(|l| {
            l.trim()
                .strip_prefix("import \"")
                .and_then(|r| r.strip_suffix("\";"))
        })
    }
    let mut wanted: BTreeSet<&'static str> = BTreeSet::new();
    let mut todo: Vec<String> = texts
        .into_iter()
        .flat_map(|t| imports(t).map(str::to_owned).collect::<Vec<_>>())
        .collect();
    while let Some(path) = todo.pop() {
        if let Some((p, text)) = crate::PROTO_FILES.iter().find(|(p, _)| **p == path) {
            if wanted.insert(p) {
                todo.extend(imports(text).map(str::to_owned));
            }
        }
    }
    crate::PROTO_FILES
        .iter()
        .filter(|(p, _)| wanted.contains(p))
        .copied()
        .collect()
}

impl SchemaRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts describing `full_name` for the Rust type `ty`. Returns `false` when `ty` already
    /// registered it or it is being described (a recursive type): the caller then adds
    /// nothing. Another type under the same name is described again, so that a different
    /// definition shows up in [`conflicts`](Self::conflicts).
    pub fn begin(&mut self, full_name: &str, ty: TypeId) -> bool {
        if self.in_progress.contains(full_name) {
            return false;
        }
        if let Some(owner) = self.owners.get(full_name) {
            if *owner == ty {
                return false;
            }
        } else {
            self.owners.insert(full_name.to_owned(), ty);
        }
        self.in_progress.insert(full_name.to_owned());
        true
    }

    /// Adds a message definition (ending a [`begin`](Self::begin)).
    pub fn add_message(&mut self, def: MessageDef) {
        self.add(Definition::Message(def));
    }

    /// Adds an enum definition (ending a [`begin`](Self::begin)).
    pub fn add_enum(&mut self, def: EnumDef) {
        self.add(Definition::Enum(def));
    }

    fn add(&mut self, def: Definition) {
        let name = def.full_name().to_owned();
        self.in_progress.remove(&name);
        match self.defs.get(&name) {
            Some(first) if *first != def => self.conflicts.push(Conflict {
                full_name: name,
                first: Box::new(first.clone()),
                second: Box::new(def),
            }),
            Some(_) => {}
            None => {
                self.defs.insert(name, def);
            }
        }
    }

    /// Records that the schema needs an import that is not one of its own files, such as
    /// [`TIMESTAMP_IMPORT`] or [`CALLER_ID_IMPORT`].
    pub fn add_import(&mut self, path: &'static str) {
        self.imports.insert(path);
    }

    /// Records that the definition `full_name` is the one of the protocol file `path` (a
    /// key of [`crate::PROTO_FILES`], such as [`TENSOR_IMPORT`]): rendered files import
    /// `path` instead of rendering it, so code generated in other languages uses the
    /// protocol's own types. It stays in the [`canonical`](Self::canonical) text and the
    /// [`schema_text`](Self::schema_text).
    pub fn define_in(&mut self, full_name: &str, path: &'static str) {
        self.external.insert(full_name.to_owned(), path);
    }

    /// The protocol file that defines `full_name`, if [`define_in`](Self::define_in) said so.
    pub fn defined_in(&self, full_name: &str) -> Option<&'static str> {
        self.external.get(full_name).copied()
    }

    /// The definitions rendered into the file of their package (not a protocol file's).
    fn rendered(&self) -> impl Iterator<Item = &Definition> {
        self.defs
            .values()
            .filter(|d| !self.external.contains_key(d.full_name()))
    }

    /// The top-level definition that holds `name` (which may be nested).
    fn top_level_of<'a>(&self, name: &'a str) -> Option<&'a str> {
        let mut cur = name;
        loop {
            if self.defs.contains_key(cur) {
                return Some(cur);
            }
            cur = cur.rsplit_once('.')?.0;
        }
    }

    /// Adds a service, rendered after the definitions of its package in the order added.
    /// Services are not part of the [`canonical`](Self::canonical) text.
    pub fn add_service(&mut self, def: ServiceDef) {
        self.services.push(def);
    }

    /// Names what generated the files, for their first line (`#[tsercom::series]` unless
    /// set).
    pub fn set_generator(&mut self, generator: &'static str) {
        self.generator = Some(generator);
    }

    /// The definitions, by full name.
    pub fn definitions(&self) -> impl Iterator<Item = &Definition> {
        self.defs.values()
    }

    /// The services, in the order added.
    pub fn services(&self) -> &[ServiceDef] {
        &self.services
    }

    /// The definition named `full_name`.
    pub fn get(&self, full_name: &str) -> Option<&Definition> {
        self.defs.get(full_name)
    }

    /// Different definitions registered under one name (two Rust types with one schema
    /// name). Empty in a consistent schema.
    pub fn conflicts(&self) -> &[Conflict] {
        &self.conflicts
    }

    /// The packages of all definitions.
    pub fn packages(&self) -> BTreeSet<&str> {
        self.defs.keys().map(|k| package_of(k)).collect()
    }

    /// Renders one `.proto` file per package, as `(path, text)`, dependencies first where a
    /// package imports another. External imports ([`TIMESTAMP_IMPORT`], [`CALLER_ID_IMPORT`])
    /// are not included; see `tsercom::Series::proto_files`.
    pub fn render_files(&self) -> Vec<(String, String)> {
        let packages: Vec<&str> = self
            .rendered()
            .map(|d| package_of(d.full_name()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut files = Vec::new();
        for pkg in &packages {
            files.push((file_of_package(pkg), self.render_package(pkg)));
        }
        // Order so that imported files come before their importers.
        let deps: Vec<BTreeSet<String>> = packages.iter().map(|p| self.package_deps(p)).collect();
        let mut ordered = Vec::new();
        let mut done = BTreeSet::new();
        while ordered.len() < files.len() {
            let before = ordered.len();
            for (i, pkg) in packages.iter().enumerate() {
                if done.contains(pkg) {
                    continue;
                }
                if deps[i]
                    .iter()
                    .all(|d| done.contains(d.as_str()) || d == pkg)
                {
                    done.insert(*pkg);
                    ordered.push(files[i].clone());
                }
            }
            if ordered.len() == before {
                // A cycle between packages (protoc rejects it); keep the rest as they are.
                for (i, pkg) in packages.iter().enumerate() {
                    if done.insert(*pkg) {
                        ordered.push(files[i].clone());
                    }
                }
            }
        }
        ordered
    }

    /// The text of the file for `package`.
    pub fn render_package(&self, package: &str) -> String {
        let mut out = String::new();
        let generator = self.generator.unwrap_or("#[tsercom::series]");
        let _ = writeln!(out, "// Generated by {generator}. Do not edit.");
        out.push_str("syntax = \"proto3\";\n\n");
        if !package.is_empty() {
            let _ = writeln!(out, "package {package};\n");
        }
        let mut imports: BTreeSet<String> = BTreeSet::new();
        for dep in self.package_deps(package) {
            if dep != package {
                imports.insert(file_of_package(&dep));
            }
        }
        for ext in self.external_imports_of(package) {
            imports.insert(ext.to_owned());
        }
        for imp in &imports {
            let _ = writeln!(out, "import \"{imp}\";");
        }
        if !imports.is_empty() {
            out.push('\n');
        }
        for def in self.rendered() {
            if package_of(def.full_name()) != package {
                continue;
            }
            match def {
                Definition::Message(m) => {
                    render_comment(m.comment.as_deref(), 0, &mut out);
                    render_message(m, 0, &mut out);
                }
                Definition::Enum(e) => render_enum(e, &mut out),
            }
            out.push('\n');
        }
        for s in &self.services {
            if package_of(&s.full_name) == package {
                render_service(s, &mut out);
                out.push('\n');
            }
        }
        out
    }

    fn named_types_of(&self, package: &str) -> BTreeSet<String> {
        fn walk(m: &MessageDef, out: &mut BTreeSet<String>) {
            let all = m
                .fields
                .iter()
                .chain(m.oneofs.iter().flat_map(|o| o.fields.iter()));
            for f in all {
                let mut ty = &f.ty;
                if let FieldType::Map(_, v) = ty {
                    ty = v;
                }
                if let FieldType::Named(n) = ty {
                    out.insert(n.clone());
                }
            }
            for n in &m.nested {
                walk(n, out);
            }
        }
        let mut out = BTreeSet::new();
        for def in self.rendered() {
            if package_of(def.full_name()) != package {
                continue;
            }
            if let Definition::Message(m) = def {
                walk(m, &mut out);
            }
        }
        for s in &self.services {
            if package_of(&s.full_name) == package {
                for m in &s.methods {
                    out.insert(m.request.clone());
                    out.insert(m.response.clone());
                }
            }
        }
        out
    }

    fn package_deps(&self, package: &str) -> BTreeSet<String> {
        self.named_types_of(package)
            .into_iter()
            .filter_map(|n| {
                let top = self.top_level_of(&n)?;
                // A protocol file's definition is an import, not a package's file.
                (!self.external.contains_key(top)).then(|| package_of(top).to_owned())
            })
            .collect()
    }

    fn external_imports_of(&self, package: &str) -> Vec<&'static str> {
        let named = self.named_types_of(package);
        let mut out = Vec::new();
        if named.contains("google.protobuf.Timestamp") {
            out.push(TIMESTAMP_IMPORT);
        }
        if named.contains("tsercom.CallerId") {
            out.push(CALLER_ID_IMPORT);
        }
        let protocol: BTreeSet<&'static str> = named
            .iter()
            .filter_map(|n| self.top_level_of(n))
            .filter_map(|top| self.defined_in(top))
            .collect();
        out.extend(
            protocol
                .into_iter()
                .filter(|p| *p != TIMESTAMP_IMPORT && *p != CALLER_ID_IMPORT),
        );
        out.extend(
            self.imports
                .iter()
                .copied()
                .filter(|i| *i != TIMESTAMP_IMPORT && *i != CALLER_ID_IMPORT),
        );
        out
    }

    /// The whole schema as one text that [`parse`] reads back into an equal schema: per
    /// package (sorted), a `package` statement, its definitions (sorted by name, fields by
    /// number) and its services; no comments, no imports. For one package this is a valid
    /// `.proto` file but for its missing imports. This is what a Hello carries and what a
    /// schema snapshot holds.
    pub fn schema_text(&self) -> String {
        let mut packages: BTreeSet<&str> = self.packages();
        packages.extend(self.services.iter().map(|s| package_of(&s.full_name)));
        let mut out = String::new();
        for pkg in packages {
            if !pkg.is_empty() {
                let _ = writeln!(out, "package {pkg};");
            }
            for def in self.defs.values() {
                if package_of(def.full_name()) != pkg {
                    continue;
                }
                match def {
                    Definition::Message(m) => render_message(m, 0, &mut out),
                    Definition::Enum(e) => render_enum(e, &mut out),
                }
            }
            for s in &self.services {
                if package_of(&s.full_name) == pkg {
                    let bare = ServiceDef {
                        comment: None,
                        ..s.clone()
                    };
                    render_service(&bare, &mut out);
                }
            }
        }
        out
    }

    /// A canonical text of every definition (sorted by name, fields by number), the input of
    /// [`fingerprint`](Self::fingerprint).
    pub fn canonical(&self) -> String {
        let mut out = String::new();
        for def in self.defs.values() {
            match def {
                Definition::Message(m) => render_message(m, 0, &mut out),
                Definition::Enum(e) => render_enum(e, &mut out),
            }
        }
        out
    }

    /// The FNV-1a 64-bit hash of `root` and the [`canonical`](Self::canonical) text.
    pub fn fingerprint(&self, root: &str) -> u64 {
        let mut h = crate::names::Fnv1a64::new();
        h.write(root.as_bytes());
        h.write(b"\n");
        h.write(self.canonical().as_bytes());
        h.finish()
    }
}

#[cfg(test)]
mod tests;
