//! The model to `.proto` text.

use std::fmt::Write as _;

use super::*;

impl FieldType {
    pub(super) fn render(&self, out: &mut String) {
        match self {
            FieldType::Scalar(s) => out.push_str(s),
            FieldType::Named(n) => {
                out.push('.');
                out.push_str(n);
            }
            FieldType::Map(k, v) => {
                out.push_str("map<");
                out.push_str(k);
                out.push_str(", ");
                v.render(out);
                out.push('>');
            }
        }
    }
}

pub(super) fn indent(depth: usize, out: &mut String) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

pub(super) fn render_comment(comment: Option<&str>, depth: usize, out: &mut String) {
    for line in comment.into_iter().flat_map(str::lines) {
        indent(depth, out);
        if line.is_empty() {
            out.push_str("//\n");
        } else {
            let _ = writeln!(out, "// {line}");
        }
    }
}

pub(super) fn render_service(s: &ServiceDef, out: &mut String) {
    render_comment(s.comment.as_deref(), 0, out);
    let _ = writeln!(out, "service {} {{", short_name(&s.full_name));
    for m in &s.methods {
        let stream = |yes: bool| if yes { "stream " } else { "" };
        let _ = writeln!(
            out,
            "  rpc {}({}.{}) returns ({}.{});",
            m.name,
            stream(m.client_streaming),
            m.request,
            stream(m.server_streaming),
            m.response,
        );
    }
    out.push_str("}\n");
}

pub(super) fn render_message(m: &MessageDef, depth: usize, out: &mut String) {
    indent(depth, out);
    let _ = writeln!(out, "message {} {{", m.short_name());
    if !m.reserved_tags.is_empty() {
        indent(depth + 1, out);
        out.push_str("reserved ");
        for (i, (lo, hi)) in m.reserved_tags.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            if lo == hi {
                let _ = write!(out, "{lo}");
            } else {
                let _ = write!(out, "{lo} to {hi}");
            }
        }
        out.push_str(";\n");
    }
    if !m.reserved_names.is_empty() {
        indent(depth + 1, out);
        out.push_str("reserved ");
        for (i, n) in m.reserved_names.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "\"{n}\"");
        }
        out.push_str(";\n");
    }
    for n in &m.nested {
        render_message(n, depth + 1, out);
    }
    let mut fields: Vec<&FieldDef> = m.fields.iter().collect();
    fields.sort_by_key(|f| f.tag);
    for f in fields {
        indent(depth + 1, out);
        match f.label {
            Label::Implicit => {}
            Label::Optional => out.push_str("optional "),
            Label::Repeated => out.push_str("repeated "),
        }
        render_field(f, out);
    }
    for o in &m.oneofs {
        indent(depth + 1, out);
        let _ = writeln!(out, "oneof {} {{", o.name);
        let mut fields: Vec<&FieldDef> = o.fields.iter().collect();
        fields.sort_by_key(|f| f.tag);
        for f in fields {
            indent(depth + 2, out);
            render_field(f, out);
        }
        indent(depth + 1, out);
        out.push_str("}\n");
    }
    indent(depth, out);
    out.push_str("}\n");
}

pub(super) fn render_field(f: &FieldDef, out: &mut String) {
    f.ty.render(out);
    let _ = writeln!(out, " {} = {};", f.name, f.tag);
}

pub(super) fn render_enum(e: &EnumDef, out: &mut String) {
    let _ = writeln!(out, "enum {} {{", short_name(&e.full_name));
    for (name, value) in &e.values {
        let _ = writeln!(out, "  {name} = {value};");
    }
    out.push_str("}\n");
}
