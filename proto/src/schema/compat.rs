//! Schema evolution: which changes between two versions of a schema keep old and new peers
//! able to read each other's bytes, and which break them. The one place of these rules:
//! `#[tsercom::runtime]` applies [`check`] to the committed snapshot and the current
//! schema at compile time, and the handshake applies [`check_peers`] to the two peers'
//! schemas at run time.
//!
//! Incompatible ([`Rule`]):
//! - a field number reused with another name or type, or a reserved number used
//!   ([`Rule::TagReused`]);
//! - a field removed without reserving its number ([`Rule::FieldRemoved`]);
//! - a field's type changed to one of another wire encoding ([`Rule::TypeChanged`]):
//!   `int32`, `uint32`, `int64`, `uint64`, `bool` and enums are interchangeable; `sint32`
//!   and `sint64`; `fixed32` and `sfixed32`; `fixed64` and `sfixed64`; `string` and
//!   `bytes`; every other change (`double` to `float`, `int64` to `sint64`, a message to
//!   another message) is not;
//! - a field made `repeated` or no longer `repeated` ([`Rule::LabelChanged`]); `optional`
//!   and no label are interchangeable;
//! - a field moved into, out of or between oneofs ([`Rule::OneofChanged`]);
//! - a message or enum removed or renamed, or a message turned into an enum
//!   ([`Rule::DefinitionRemoved`], [`Rule::TypeChanged`]);
//! - an enum value removed or renamed ([`Rule::EnumValueRemoved`]) or renumbered
//!   ([`Rule::EnumValueRenumbered`]);
//! - a service or method removed or renamed ([`Rule::ServiceRemoved`],
//!   [`Rule::MethodRemoved`]), a method's request or response type changed
//!   ([`Rule::MethodTypeChanged`]) or its streaming kind ([`Rule::StreamingChanged`]).
//!
//! Compatible: new fields, new oneof members, new messages, enums, enum values, services and
//! methods; a removed field whose number is reserved; `optional` added or dropped; a type
//! changed within one of the groups above.
//!
//! ```
//! use tsercom_proto::schema::{compat, compat::Rule, parse};
//!
//! let v1 = parse("package w; message R { double celsius = 1; }").unwrap();
//! let v2 = parse("package w; message R { double celsius = 1; string station = 2; }").unwrap();
//! assert!(compat::check(&v1, &v2).is_empty());
//! let broken = parse("package w; message R { float celsius = 1; }").unwrap();
//! let found = compat::check(&v1, &broken);
//! assert_eq!(found[0].rule, Rule::TypeChanged);
//! assert_eq!(found[0].old.as_deref(), Some("double celsius = 1"));
//! ```

use std::collections::BTreeMap;
use std::fmt;

use super::{Definition, EnumDef, FieldDef, FieldType, Label, MessageDef, SchemaRegistry};

/// A rule of schema evolution that a change broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Rule {
    /// A field number now names another field (another name, or a type of another wire
    /// encoding), or a number the old schema reserved is used.
    TagReused,
    /// A field was removed without reserving its number.
    FieldRemoved,
    /// A field's type changed to one with another wire encoding, or a definition changed
    /// kind (message to enum or back).
    TypeChanged,
    /// A field became `repeated`, or stopped being `repeated`.
    LabelChanged,
    /// A field moved into, out of, or between oneofs.
    OneofChanged,
    /// A message or enum was removed or renamed.
    DefinitionRemoved,
    /// An enum value was removed or renamed.
    EnumValueRemoved,
    /// An enum value has another number.
    EnumValueRenumbered,
    /// A service was removed or renamed.
    ServiceRemoved,
    /// A method was removed or renamed.
    MethodRemoved,
    /// A method's request or response type changed.
    MethodTypeChanged,
    /// A method's streaming kind (client, server) changed.
    StreamingChanged,
}

impl Rule {
    /// What the rule says, for messages.
    pub fn description(self) -> &'static str {
        match self {
            Rule::TagReused => "a field number may not be reused for another field",
            Rule::FieldRemoved => {
                "a removed field's number must be reserved (`#[series(reserved(..))]`)"
            }
            Rule::TypeChanged => "a field's type may only change within a wire-compatible group",
            Rule::LabelChanged => "a field may not become or stop being repeated",
            Rule::OneofChanged => "a field may not move into, out of or between oneofs",
            Rule::DefinitionRemoved => "a message or enum may not be removed or renamed",
            Rule::EnumValueRemoved => "an enum value may not be removed or renamed",
            Rule::EnumValueRenumbered => "an enum value may not change its number",
            Rule::ServiceRemoved => "a service may not be removed or renamed",
            Rule::MethodRemoved => "a method may not be removed or renamed",
            Rule::MethodTypeChanged => "a method's request and response types may not change",
            Rule::StreamingChanged => "a method's streaming kind may not change",
        }
    }

    /// Whether the rule is about something the new schema no longer has. Two running peers
    /// of different versions are not harmed by such a change ([`check_peers`] ignores it):
    /// what one side lacks the other does not send, or it is skipped when read.
    pub fn is_removal(self) -> bool {
        matches!(
            self,
            Rule::FieldRemoved
                | Rule::DefinitionRemoved
                | Rule::EnumValueRemoved
                | Rule::ServiceRemoved
                | Rule::MethodRemoved
        )
    }
}

/// Where an incompatibility is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Location {
    /// A message or enum, by full name.
    Definition(String),
    /// A field of a message: the message's full name, the field's name (in the new schema
    /// when it has the field, else in the old) and number.
    Field {
        /// The message's full name.
        message: String,
        /// The field's name.
        field: String,
        /// The field's number.
        tag: u32,
    },
    /// A value of an enum: the enum's full name and the value's name.
    EnumValue {
        /// The enum's full name.
        enumeration: String,
        /// The value's name (in the old schema).
        value: String,
    },
    /// A service, by full name.
    Service(String),
    /// A method of a service.
    Method {
        /// The service's full name.
        service: String,
        /// The method's name.
        method: String,
    },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Definition(n) => write!(f, "`{n}`"),
            Location::Field {
                message,
                field,
                tag,
            } => write!(f, "field `{message}.{field}` (number {tag})"),
            Location::EnumValue { enumeration, value } => {
                write!(f, "enum value `{enumeration}.{value}`")
            }
            Location::Service(n) => write!(f, "service `{n}`"),
            Location::Method { service, method } => write!(f, "method `{service}.{method}`"),
        }
    }
}

/// One incompatible change: where, the rule broken, and the definition before and after
/// (as `.proto` text, `None` where there is none).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Incompatibility {
    /// Where.
    pub location: Location,
    /// The rule broken.
    pub rule: Rule,
    /// The old definition, e.g. `double celsius = 1`.
    pub old: Option<String>,
    /// The new definition.
    pub new: Option<String>,
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.location)?;
        match (&self.old, &self.new) {
            (Some(o), Some(n)) => write!(f, "was `{o}`, now `{n}`")?,
            (Some(o), None) => write!(f, "was `{o}`, now absent")?,
            (None, Some(n)) => write!(f, "now `{n}`")?,
            (None, None) => {}
        }
        write!(f, " ({})", self.rule.description())
    }
}

/// Every incompatible change from `old` to `new`, in order of definition name (fields by
/// number). Empty when `new` may replace `old`.
pub fn check(old: &SchemaRegistry, new: &SchemaRegistry) -> Vec<Incompatibility> {
    let mut cx = Cx {
        old,
        new,
        out: Vec::new(),
    };
    for def in old.defs.values() {
        cx.definition(def);
    }
    cx.services();
    cx.out
}

/// The incompatibilities between two peers' schemas of one series type (`a` rooted at
/// message `a_root`, `b` at `b_root`): the root messages must have one name, and every
/// change between the two, either way, must follow the rules but those about removal
/// ([`Rule::is_removal`]), which do not matter between two running versions. Empty when
/// the two peers can read each other.
pub fn check_peers(
    a: &SchemaRegistry,
    a_root: &str,
    b: &SchemaRegistry,
    b_root: &str,
) -> Vec<Incompatibility> {
    let mut out = Vec::new();
    if a_root != b_root {
        out.push(Incompatibility {
            location: Location::Definition(a_root.to_owned()),
            rule: Rule::DefinitionRemoved,
            old: Some(format!("message {a_root}")),
            new: Some(format!("message {b_root}")),
        });
    }
    for i in check(a, b).into_iter().chain(check(b, a)) {
        if !i.rule.is_removal()
            && !out
                .iter()
                .any(|o: &Incompatibility| o.location == i.location)
        {
            out.push(i);
        }
    }
    out
}

struct Cx<'a> {
    old: &'a SchemaRegistry,
    new: &'a SchemaRegistry,
    out: Vec<Incompatibility>,
}

/// A field with the oneof it belongs to.
type Slot<'a> = (&'a FieldDef, Option<&'a str>);

fn slots(m: &MessageDef) -> BTreeMap<u32, Slot<'_>> {
    let mut out = BTreeMap::new();
    for f in &m.fields {
        out.insert(f.tag, (f, None));
    }
    for o in &m.oneofs {
        for f in &o.fields {
            out.insert(f.tag, (f, Some(o.name.as_str())));
        }
    }
    out
}

/// A field as `.proto` text: `repeated double x = 1`, or `oneof o { string s = 2 }`.
pub fn field_text((f, oneof): Slot<'_>) -> String {
    let mut ty = String::new();
    f.ty.render(&mut ty);
    let ty = ty.trim_start_matches('.');
    match oneof {
        Some(o) => format!("oneof {o} {{ {ty} {} = {} }}", f.name, f.tag),
        None => {
            let label = match f.label {
                Label::Implicit => "",
                Label::Optional => "optional ",
                Label::Repeated => "repeated ",
            };
            format!("{label}{ty} {} = {}", f.name, f.tag)
        }
    }
}

/// The wire-compatible group of a scalar: types in one group read each other's bytes.
fn scalar_group(s: &str) -> u8 {
    match s {
        "int32" | "uint32" | "int64" | "uint64" | "bool" => 1,
        "sint32" | "sint64" => 2,
        "fixed32" | "sfixed32" => 3,
        "fixed64" | "sfixed64" => 4,
        "string" | "bytes" => 5,
        "double" => 6,
        "float" => 7,
        _ => 0,
    }
}

fn is_enum(reg: &SchemaRegistry, full: &str) -> bool {
    matches!(reg.defs.get(full), Some(Definition::Enum(_)))
}

impl Cx<'_> {
    fn push(&mut self, location: Location, rule: Rule, old: Option<String>, new: Option<String>) {
        self.out.push(Incompatibility {
            location,
            rule,
            old,
            new,
        });
    }

    fn definition(&mut self, def: &Definition) {
        let name = def.full_name().to_owned();
        match (def, self.new.defs.get(&name)) {
            (Definition::Message(o), Some(Definition::Message(n))) => self.message(o, n),
            (Definition::Enum(o), Some(Definition::Enum(n))) => self.enumeration(o, n),
            (_, Some(other)) => self.push(
                Location::Definition(name),
                Rule::TypeChanged,
                Some(kind_text(def)),
                Some(kind_text(other)),
            ),
            (_, None) => self.push(
                Location::Definition(name),
                Rule::DefinitionRemoved,
                Some(kind_text(def)),
                None,
            ),
        }
    }

    fn message(&mut self, old: &MessageDef, new: &MessageDef) {
        let (olds, news) = (slots(old), slots(new));
        for (tag, o) in &olds {
            let Some(n) = news.get(tag) else {
                let reserved = new
                    .reserved_tags
                    .iter()
                    .any(|(lo, hi)| lo <= tag && tag <= hi);
                if !reserved {
                    self.field(old, o.0, Rule::FieldRemoved, Some(*o), None);
                }
                continue;
            };
            let typed = self.types_compatible(&o.0.ty, &n.0.ty);
            let rule = if o.0.name != n.0.name {
                Some(Rule::TagReused)
            } else if !typed {
                Some(Rule::TypeChanged)
            } else if (o.0.label == Label::Repeated) != (n.0.label == Label::Repeated)
                && o.1.is_none()
                && n.1.is_none()
            {
                Some(Rule::LabelChanged)
            } else if o.1 != n.1 {
                Some(Rule::OneofChanged)
            } else {
                None
            };
            if let Some(rule) = rule {
                self.field(new, n.0, rule, Some(*o), Some(*n));
            }
        }
        for (tag, n) in &news {
            if olds.contains_key(tag) {
                continue;
            }
            if let Some((lo, hi)) = old
                .reserved_tags
                .iter()
                .find(|(lo, hi)| lo <= tag && tag <= hi)
            {
                let reserved = if lo == hi {
                    format!("reserved {lo}")
                } else {
                    format!("reserved {lo} to {hi}")
                };
                self.push(
                    Location::Field {
                        message: new.full_name.clone(),
                        field: n.0.name.clone(),
                        tag: *tag,
                    },
                    Rule::TagReused,
                    Some(reserved),
                    Some(field_text(*n)),
                );
            }
        }
        for o in &old.nested {
            match new.nested.iter().find(|n| n.full_name == o.full_name) {
                Some(n) => self.message(o, n),
                None => self.push(
                    Location::Definition(o.full_name.clone()),
                    Rule::DefinitionRemoved,
                    Some(format!("message {}", o.full_name)),
                    None,
                ),
            }
        }
    }

    fn field(
        &mut self,
        message: &MessageDef,
        at: &FieldDef,
        rule: Rule,
        old: Option<Slot<'_>>,
        new: Option<Slot<'_>>,
    ) {
        self.push(
            Location::Field {
                message: message.full_name.clone(),
                field: at.name.clone(),
                tag: at.tag,
            },
            rule,
            old.map(field_text),
            new.map(field_text),
        );
    }

    fn types_compatible(&self, old: &FieldType, new: &FieldType) -> bool {
        let int = |s: &str| scalar_group(s) == 1 && s != "bool";
        match (old, new) {
            (FieldType::Scalar(a), FieldType::Scalar(b)) => scalar_group(a) == scalar_group(b),
            (FieldType::Named(a), FieldType::Named(b)) => a == b,
            (FieldType::Named(e), FieldType::Scalar(s)) => is_enum(self.old, e) && int(s),
            (FieldType::Scalar(s), FieldType::Named(e)) => is_enum(self.new, e) && int(s),
            (FieldType::Map(ka, va), FieldType::Map(kb, vb)) => {
                scalar_group(ka) == scalar_group(kb) && self.types_compatible(va, vb)
            }
            _ => false,
        }
    }

    fn enumeration(&mut self, old: &EnumDef, new: &EnumDef) {
        for (name, number) in &old.values {
            let location = Location::EnumValue {
                enumeration: old.full_name.clone(),
                value: name.clone(),
            };
            let was = Some(format!("{name} = {number}"));
            match new.values.iter().find(|(n, _)| n == name) {
                Some((_, m)) if m == number => {}
                Some((n, m)) => self.push(
                    location,
                    Rule::EnumValueRenumbered,
                    was,
                    Some(format!("{n} = {m}")),
                ),
                None => {
                    let now = new
                        .values
                        .iter()
                        .find(|(_, m)| m == number)
                        .map(|(n, m)| format!("{n} = {m}"));
                    self.push(location, Rule::EnumValueRemoved, was, now);
                }
            }
        }
    }

    fn services(&mut self) {
        for o in &self.old.services {
            let Some(n) = self
                .new
                .services
                .iter()
                .find(|s| s.full_name == o.full_name)
            else {
                self.push(
                    Location::Service(o.full_name.clone()),
                    Rule::ServiceRemoved,
                    Some(format!("service {}", o.full_name)),
                    None,
                );
                continue;
            };
            for om in &o.methods {
                let location = Location::Method {
                    service: o.full_name.clone(),
                    method: om.name.clone(),
                };
                let Some(nm) = n.methods.iter().find(|m| m.name == om.name) else {
                    self.push(location, Rule::MethodRemoved, Some(method_text(om)), None);
                    continue;
                };
                let rule = if om.request != nm.request || om.response != nm.response {
                    Rule::MethodTypeChanged
                } else if om.client_streaming != nm.client_streaming
                    || om.server_streaming != nm.server_streaming
                {
                    Rule::StreamingChanged
                } else {
                    continue;
                };
                self.push(location, rule, Some(method_text(om)), Some(method_text(nm)));
            }
        }
    }
}

fn kind_text(def: &Definition) -> String {
    match def {
        Definition::Message(m) => format!("message {}", m.full_name),
        Definition::Enum(e) => format!("enum {}", e.full_name),
    }
}

fn method_text(m: &super::MethodDef) -> String {
    let stream = |yes: bool| if yes { "stream " } else { "" };
    format!(
        "rpc {}({}{}) returns ({}{})",
        m.name,
        stream(m.client_streaming),
        m.request,
        stream(m.server_streaming),
        m.response
    )
}

#[cfg(test)]
mod tests;
