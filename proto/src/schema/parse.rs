//! `.proto` text back to the model: the subset the renderer emits (and what a person
//! writes in the same style), so that a schema snapshot or a peer's schema can be read.
//!
//! Understood: `syntax`, `package`, `import` and `option` statements (the last three
//! ignored but for the package), `message` with nested messages, fields (`optional`,
//! `repeated`, `map<k, v>`, field options in brackets are ignored), `oneof`, `reserved`
//! numbers, ranges and names; `enum`; `service` with `rpc` methods (streaming or not);
//! `//` and `/* */` comments. Several `package` statements may follow each other: the
//! definitions after one belong to it ([`SchemaRegistry::schema_text`] writes that form
//! for a schema that spans packages). Type names are full (`.pkg.Name`) or resolved
//! relative to the enclosing scopes, as protoc does.

use super::{
    EnumDef, FieldDef, FieldType, Label, MessageDef, MethodDef, OneofDef, SchemaRegistry,
    ServiceDef,
};

/// The scalar type names of proto3, as the model spells them.
pub const SCALARS: &[&str] = &[
    "double", "float", "int32", "int64", "uint32", "uint64", "sint32", "sint64", "fixed32",
    "fixed64", "sfixed32", "sfixed64", "bool", "string", "bytes",
];

/// A `.proto` text could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The 1-based line of the problem.
    pub line: usize,
    /// What was wrong.
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Int(i64),
    Str(String),
    Sym(char),
}

fn tokenize(text: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut line = 1;
    let err = |line, message: String| ParseError { line, message };
    while let Some(&c) = chars.get(i) {
        let next = chars.get(i + 1).copied();
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('/') {
            while chars.get(i).is_some_and(|c| *c != '\n') {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            loop {
                match chars.get(i) {
                    None => return Err(err(line, "unterminated comment".into())),
                    Some('*') if chars.get(i + 1) == Some(&'/') => {
                        i += 2;
                        break;
                    }
                    Some('\n') => line += 1,
                    Some(_) => {}
                }
                i += 1;
            }
        } else if c == '"' || c == '\'' {
            let start = i + 1;
            i += 1;
            while chars.get(i).is_some_and(|q| *q != c && *q != '\n') {
                i += 1;
            }
            if chars.get(i) != Some(&c) {
                return Err(err(line, "unterminated string".into()));
            }
            out.push((Tok::Str(chars[start..i].iter().collect()), line));
            i += 1;
        } else if c.is_ascii_digit() || (c == '-' && next.is_some_and(|n| n.is_ascii_digit())) {
            let start = i;
            i += 1;
            while chars.get(i).is_some_and(|c| c.is_ascii_alphanumeric()) {
                i += 1;
            }
            let s: String = chars[start..i].iter().collect();
            let n = if let Some(hex) = s.strip_prefix("0x") {
                i64::from_str_radix(hex, 16).ok()
            } else {
                s.parse().ok()
            };
            let n = n.ok_or_else(|| err(line, format!("invalid number `{s}`")))?;
            out.push((Tok::Int(n), line));
        } else if c.is_ascii_alphabetic() || c == '_' || c == '.' {
            let start = i;
            i += 1;
            while chars
                .get(i)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
            {
                i += 1;
            }
            out.push((Tok::Word(chars[start..i].iter().collect()), line));
        } else if "{}[]()<>;=,".contains(c) {
            out.push((Tok::Sym(c), line));
            i += 1;
        } else {
            return Err(err(line, format!("unexpected character `{c}`")));
        }
    }
    Ok(out)
}

/// How deeply messages may nest in a text.
const MAX_DEPTH: usize = 32;

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    depth: usize,
    package: String,
    reg: SchemaRegistry,
}

impl Parser {
    fn line(&self) -> usize {
        self.toks
            .get(self.pos)
            .or(self.toks.last())
            .map_or(1, |(_, l)| *l)
    }

    fn err<T>(&self, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            line: self.line(),
            message: message.into(),
        })
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }

    fn next(&mut self) -> Result<Tok, ParseError> {
        match self.toks.get(self.pos) {
            Some((t, _)) => {
                self.pos += 1;
                Ok(t.clone())
            }
            None => self.err("unexpected end of text"),
        }
    }

    fn is_sym(&self, c: char) -> bool {
        self.peek() == Some(&Tok::Sym(c))
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(x)) if x == w)
    }

    fn sym(&mut self, c: char) -> Result<(), ParseError> {
        match self.next()? {
            Tok::Sym(x) if x == c => Ok(()),
            t => {
                self.pos -= 1;
                self.err(format!("expected `{c}`, found {t:?}"))
            }
        }
    }

    fn word(&mut self) -> Result<String, ParseError> {
        match self.next()? {
            Tok::Word(w) => Ok(w),
            t => {
                self.pos -= 1;
                self.err(format!("expected a name, found {t:?}"))
            }
        }
    }

    fn int(&mut self) -> Result<i64, ParseError> {
        match self.next()? {
            Tok::Int(n) => Ok(n),
            t => {
                self.pos -= 1;
                self.err(format!("expected a number, found {t:?}"))
            }
        }
    }

    fn tag(&mut self) -> Result<u32, ParseError> {
        let n = self.int()?;
        match u32::try_from(n) {
            Ok(t) if t > 0 => Ok(t),
            _ => self.err(format!("invalid field number {n}")),
        }
    }

    /// Skips to the end of the statement (`;`), or over a `{ .. }` block.
    fn skip_statement(&mut self) -> Result<(), ParseError> {
        let mut depth = 0usize;
        loop {
            match self.next()? {
                Tok::Sym(';') if depth == 0 => return Ok(()),
                Tok::Sym('{') => depth += 1,
                Tok::Sym('}') => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return Ok(());
                    }
                }
                _ => {}
            }
        }
    }

    /// `[ .. ]` field options, if any.
    fn skip_options(&mut self) -> Result<(), ParseError> {
        if self.is_sym('[') {
            while !self.is_sym(']') {
                self.next()?;
            }
            self.sym(']')?;
        }
        Ok(())
    }

    fn full(&self, scope: &str, name: &str) -> String {
        if scope.is_empty() {
            name.to_owned()
        } else {
            format!("{scope}.{name}")
        }
    }

    fn file(&mut self) -> Result<(), ParseError> {
        while let Some(t) = self.peek().cloned() {
            match t {
                Tok::Word(w) if w == "package" => {
                    self.pos += 1;
                    self.package = self.word()?;
                    self.sym(';')?;
                }
                Tok::Word(w) if w == "message" => {
                    self.pos += 1;
                    let scope = self.package.clone();
                    let m = self.message(&scope)?;
                    self.reg.add_message(m);
                }
                Tok::Word(w) if w == "enum" => {
                    self.pos += 1;
                    let scope = self.package.clone();
                    let e = self.enumeration(&scope)?;
                    self.reg.add_enum(e);
                }
                Tok::Word(w) if w == "service" => {
                    self.pos += 1;
                    let s = self.service()?;
                    self.reg.add_service(s);
                }
                Tok::Word(w) if matches!(w.as_str(), "syntax" | "import" | "option") => {
                    self.skip_statement()?
                }
                Tok::Sym(';') => self.pos += 1,
                t => return self.err(format!("unexpected {t:?} at the top level")),
            }
        }
        Ok(())
    }

    fn message(&mut self, scope: &str) -> Result<MessageDef, ParseError> {
        let name = self.word()?;
        let mut m = MessageDef::new(self.full(scope, &name));
        self.sym('{')?;
        while !self.is_sym('}') {
            let Tok::Word(w) = self.next()? else {
                self.pos -= 1;
                if self.is_sym(';') {
                    self.pos += 1;
                    continue;
                }
                return self.err("expected a field, `message`, `oneof` or `reserved`");
            };
            match w.as_str() {
                "message" => {
                    if self.depth >= MAX_DEPTH {
                        return self.err(format!("messages nest deeper than {MAX_DEPTH}"));
                    }
                    self.depth += 1;
                    let nested = self.message(&m.full_name.clone())?;
                    self.depth -= 1;
                    m.nested.push(nested);
                }
                "enum" => return self.err("enums nested in a message are not supported"),
                "option" | "extensions" => self.skip_statement()?,
                "reserved" => self.reserved(&mut m)?,
                "oneof" => {
                    let name = self.word()?;
                    self.sym('{')?;
                    let mut fields = Vec::new();
                    while !self.is_sym('}') {
                        if self.is_word("option") {
                            self.skip_statement()?;
                            continue;
                        }
                        let ty = self.word()?;
                        fields.push(self.field_rest(Label::Implicit, &ty)?);
                    }
                    self.sym('}')?;
                    m.oneofs.push(OneofDef { name, fields });
                }
                "optional" | "repeated" => {
                    let label = if w == "optional" {
                        Label::Optional
                    } else {
                        Label::Repeated
                    };
                    let ty = self.word()?;
                    let f = self.field_rest(label, &ty)?;
                    m.fields.push(f);
                }
                "map" => {
                    self.sym('<')?;
                    let key = self.word()?;
                    let Some(key) = scalar(&key) else {
                        return self.err(format!("invalid map key type `{key}`"));
                    };
                    self.sym(',')?;
                    let value = self.word()?;
                    self.sym('>')?;
                    let mut f = self.field_rest(Label::Implicit, &value)?;
                    f.ty = FieldType::Map(key, Box::new(f.ty));
                    m.fields.push(f);
                }
                "required" | "group" => return self.err(format!("`{w}` is not proto3")),
                _ => {
                    let f = self.field_rest(Label::Implicit, &w)?;
                    m.fields.push(f);
                }
            }
        }
        self.sym('}')?;
        Ok(m)
    }

    /// `name = N [opts];` after the type `ty`.
    fn field_rest(&mut self, label: Label, ty: &str) -> Result<FieldDef, ParseError> {
        let name = self.word()?;
        self.sym('=')?;
        let tag = self.tag()?;
        self.skip_options()?;
        self.sym(';')?;
        Ok(FieldDef::new(name, tag, label, raw_type(ty)))
    }

    fn reserved(&mut self, m: &mut MessageDef) -> Result<(), ParseError> {
        loop {
            match self.next()? {
                Tok::Str(s) => m.reserved_names.push(s),
                Tok::Int(_) => {
                    self.pos -= 1;
                    let lo = self.tag()?;
                    let hi = if self.is_word("to") {
                        self.pos += 1;
                        if self.is_word("max") {
                            self.pos += 1;
                            crate::names::MAX_TAG
                        } else {
                            self.tag()?
                        }
                    } else {
                        lo
                    };
                    m.reserved_tags.push((lo, hi));
                }
                t => {
                    self.pos -= 1;
                    return self.err(format!("expected a reserved number or name, found {t:?}"));
                }
            }
            if self.is_sym(',') {
                self.pos += 1;
                continue;
            }
            return self.sym(';');
        }
    }

    fn enumeration(&mut self, scope: &str) -> Result<EnumDef, ParseError> {
        let name = self.word()?;
        let mut e = EnumDef {
            full_name: self.full(scope, &name),
            values: Vec::new(),
        };
        self.sym('{')?;
        while !self.is_sym('}') {
            let w = self.word()?;
            if matches!(w.as_str(), "option" | "reserved") {
                self.skip_statement()?;
                continue;
            }
            self.sym('=')?;
            let n = self.int()?;
            let Ok(n) = i32::try_from(n) else {
                return self.err(format!("enum value {n} out of range"));
            };
            self.skip_options()?;
            self.sym(';')?;
            e.values.push((w, n));
        }
        self.sym('}')?;
        Ok(e)
    }

    fn service(&mut self) -> Result<ServiceDef, ParseError> {
        let name = self.word()?;
        let mut s = ServiceDef {
            full_name: self.full(&self.package.clone(), &name),
            comment: None,
            methods: Vec::new(),
        };
        self.sym('{')?;
        while !self.is_sym('}') {
            let w = self.word()?;
            if w == "option" {
                self.skip_statement()?;
                continue;
            }
            if w != "rpc" {
                return self.err(format!("expected `rpc`, found `{w}`"));
            }
            let name = self.word()?;
            let (client_streaming, request) = self.rpc_type()?;
            if self.word()? != "returns" {
                return self.err("expected `returns`");
            }
            let (server_streaming, response) = self.rpc_type()?;
            if self.is_sym('{') {
                self.skip_statement()?;
            } else {
                self.sym(';')?;
            }
            s.methods.push(MethodDef {
                name,
                request,
                response,
                client_streaming,
                server_streaming,
            });
        }
        self.sym('}')?;
        Ok(s)
    }

    fn rpc_type(&mut self) -> Result<(bool, String), ParseError> {
        self.sym('(')?;
        let mut ty = self.word()?;
        let streaming = ty == "stream" && !self.is_sym(')');
        if streaming {
            ty = self.word()?;
        }
        self.sym(')')?;
        Ok((streaming, ty))
    }
}

fn scalar(name: &str) -> Option<&'static str> {
    SCALARS.iter().copied().find(|s| *s == name)
}

/// A type as written: a scalar, or a name resolved after parsing (full names keep their
/// leading dot until then).
fn raw_type(ty: &str) -> FieldType {
    match scalar(ty) {
        Some(s) => FieldType::Scalar(s),
        None => FieldType::Named(ty.to_owned()),
    }
}

/// Resolves `name` as protoc does: full when it starts with `.`, else in the innermost
/// of the scopes of `scope` that defines it (or, when none does, in `scope`'s package).
fn resolve(name: &str, scope: &str, defined: &dyn Fn(&str) -> bool) -> String {
    if let Some(full) = name.strip_prefix('.') {
        return full.to_owned();
    }
    let mut cur = Some(scope);
    while let Some(s) = cur {
        let candidate = if s.is_empty() {
            name.to_owned()
        } else {
            format!("{s}.{name}")
        };
        if defined(&candidate) {
            return candidate;
        }
        cur = if s.is_empty() {
            None
        } else {
            Some(s.rsplit_once('.').map_or("", |(p, _)| p))
        };
    }
    name.to_owned()
}

fn resolve_type(ty: &mut FieldType, scope: &str, defined: &dyn Fn(&str) -> bool) {
    match ty {
        FieldType::Named(n) => *n = resolve(n, scope, defined),
        FieldType::Map(_, v) => resolve_type(v, scope, defined),
        FieldType::Scalar(_) => {}
    }
}

fn resolve_message(m: &mut MessageDef, defined: &dyn Fn(&str) -> bool) {
    let scope = m.full_name.clone();
    for f in m
        .fields
        .iter_mut()
        .chain(m.oneofs.iter_mut().flat_map(|o| o.fields.iter_mut()))
    {
        resolve_type(&mut f.ty, &scope, defined);
    }
    for n in &mut m.nested {
        resolve_message(n, defined);
    }
}

fn names(m: &MessageDef, out: &mut std::collections::BTreeSet<String>) {
    out.insert(m.full_name.clone());
    for n in &m.nested {
        names(n, out);
    }
}

/// Parses `.proto` text (see the [module docs](crate::schema)) into a registry: its definitions,
/// services and reserved numbers. Definitions the text names but does not define
/// (`google.protobuf.Timestamp`) stay names.
pub fn parse(text: &str) -> Result<SchemaRegistry, ParseError> {
    let mut p = Parser {
        toks: tokenize(text)?,
        pos: 0,
        depth: 0,
        package: String::new(),
        reg: SchemaRegistry::new(),
    };
    p.file()?;
    let mut reg = p.reg;
    if let Some(c) = reg.conflicts.first() {
        return Err(ParseError {
            line: 1,
            message: format!("`{}` is defined twice, differently", c.full_name),
        });
    }
    let mut defined = std::collections::BTreeSet::new();
    for def in reg.defs.values() {
        match def {
            super::Definition::Message(m) => names(m, &mut defined),
            super::Definition::Enum(e) => {
                defined.insert(e.full_name.clone());
            }
        }
    }
    let is_defined = |n: &str| defined.contains(n);
    for def in reg.defs.values_mut() {
        if let super::Definition::Message(m) = def {
            resolve_message(m, &is_defined);
        }
    }
    for s in &mut reg.services {
        let package = super::package_of(&s.full_name).to_owned();
        for m in &mut s.methods {
            m.request = resolve(&m.request, &package, &is_defined);
            m.response = resolve(&m.response, &package, &is_defined);
        }
    }
    Ok(reg)
}
