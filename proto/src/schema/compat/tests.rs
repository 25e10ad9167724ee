use proptest::prelude::*;

use super::*;
use crate::schema::parse;

fn reg(text: &str) -> SchemaRegistry {
    match parse(text) {
        Ok(r) => r,
        Err(e) => panic!("{e}: {text}"),
    }
}

const V1: &str = "package w;
enum Mode { MODE_OFF = 0; MODE_ON = 1; }
message R {
  reserved 9;
  double celsius = 1;
  int32 count = 2;
  repeated float samples = 3;
  .w.Mode mode = 4;
  oneof origin { string station = 5; bytes raw = 6; }
  sint64 delta = 7;
  fixed32 flags = 8;
}
service Api {
  rpc Get(.w.R) returns (.w.R);
  rpc Watch(.w.R) returns (stream .w.R);
}
";

/// V1 with `from` replaced by `to`.
fn v1_with(from: &str, to: &str) -> SchemaRegistry {
    assert!(V1.contains(from), "{from}");
    reg(&V1.replacen(from, to, 1))
}

fn only(found: &[Incompatibility]) -> &Incompatibility {
    assert_eq!(found.len(), 1, "{found:#?}");
    &found[0]
}

fn field(message: &str, field: &str, tag: u32) -> Location {
    Location::Field {
        message: message.into(),
        field: field.into(),
        tag,
    }
}

#[test]
fn a_schema_is_compatible_with_itself() {
    assert_eq!(check(&reg(V1), &reg(V1)), vec![]);
}

#[test]
fn tag_reused_with_another_name() {
    let found = check(&reg(V1), &v1_with("int32 count = 2", "int32 total = 2"));
    let i = only(&found);
    assert_eq!(i.rule, Rule::TagReused);
    assert_eq!(i.location, field("w.R", "total", 2));
    assert_eq!(i.old.as_deref(), Some("int32 count = 2"));
    assert_eq!(i.new.as_deref(), Some("int32 total = 2"));
}

#[test]
fn reserved_number_used() {
    let found = check(
        &reg(V1),
        &v1_with("fixed32 flags = 8;", "fixed32 flags = 8; bool on = 9;"),
    );
    let i = only(&found);
    assert_eq!(i.rule, Rule::TagReused);
    assert_eq!(i.location, field("w.R", "on", 9));
    assert_eq!(i.old.as_deref(), Some("reserved 9"));
}

#[test]
fn field_removed_without_reserving() {
    let found = check(&reg(V1), &v1_with("int32 count = 2;", ""));
    let i = only(&found);
    assert_eq!(i.rule, Rule::FieldRemoved);
    assert_eq!(i.location, field("w.R", "count", 2));
    assert_eq!(i.new, None);
    let reserved = v1_with("reserved 9;", "reserved 2, 9;").clone();
    let mut text = reserved.schema_text();
    text = text.replace("int32 count = 2;", "");
    assert_eq!(check(&reg(V1), &reg(&text)), vec![]);
}

#[test]
fn incompatible_type_changes() {
    for (from, to) in [
        ("double celsius = 1", "float celsius = 1"),
        ("double celsius = 1", "int64 celsius = 1"),
        ("int32 count = 2", "sint32 count = 2"),
        ("int32 count = 2", "string count = 2"),
        ("sint64 delta = 7", "int64 delta = 7"),
        ("fixed32 flags = 8", "fixed64 flags = 8"),
        ("fixed32 flags = 8", "uint32 flags = 8"),
        (".w.Mode mode = 4", ".w.R mode = 4"),
        (".w.Mode mode = 4", "sint32 mode = 4"),
    ] {
        let found = check(&reg(V1), &v1_with(from, to));
        let i = only(&found);
        assert_eq!(i.rule, Rule::TypeChanged, "{from} -> {to}");
        assert_eq!(i.old.as_deref(), Some(from.trim_start_matches('.')));
    }
}

#[test]
fn compatible_type_changes() {
    for (from, to) in [
        ("int32 count = 2", "int64 count = 2"),
        ("int32 count = 2", "uint64 count = 2"),
        ("int32 count = 2", "bool count = 2"),
        ("int32 count = 2", "optional int32 count = 2"),
        ("sint64 delta = 7", "sint32 delta = 7"),
        ("fixed32 flags = 8", "sfixed32 flags = 8"),
        ("string station = 5", "bytes station = 5"),
        (".w.Mode mode = 4", "int32 mode = 4"),
    ] {
        assert_eq!(
            check(&reg(V1), &v1_with(from, to)),
            vec![],
            "{from} -> {to}"
        );
    }
}

#[test]
fn repeated_changed() {
    let found = check(
        &reg(V1),
        &v1_with("repeated float samples", "float samples"),
    );
    assert_eq!(only(&found).rule, Rule::LabelChanged);
}

#[test]
fn field_moved_into_or_out_of_a_oneof() {
    let out = v1_with(
        "oneof origin { string station = 5; bytes raw = 6; }",
        "string station = 5; oneof origin { bytes raw = 6; }",
    );
    let i = only(&check(&reg(V1), &out)).clone();
    assert_eq!(i.rule, Rule::OneofChanged);
    assert_eq!(
        i.old.as_deref(),
        Some("oneof origin { string station = 5 }")
    );
    assert_eq!(i.new.as_deref(), Some("string station = 5"));
    let into = v1_with(
        "oneof origin { string station = 5; bytes raw = 6; }",
        "oneof origin { string station = 5; bytes raw = 6; int32 count = 2; }",
    );
    let mut text = into.schema_text();
    text = text.replacen("  int32 count = 2;\n", "", 1);
    let i = only(&check(&reg(V1), &reg(&text))).clone();
    assert_eq!(i.rule, Rule::OneofChanged);
    assert_eq!(i.location, field("w.R", "count", 2));
}

#[test]
fn message_removed_or_renamed() {
    let text = V1
        .replace("message R {", "message S {")
        .replace(".w.R", ".w.S");
    let found = check(&reg(V1), &reg(&text));
    assert!(found
        .iter()
        .any(|i| i.rule == Rule::DefinitionRemoved
            && i.location == Location::Definition("w.R".into())));
    assert!(found.iter().any(|i| i.rule == Rule::MethodTypeChanged));
}

#[test]
fn enum_value_removed_or_renumbered() {
    let found = check(&reg(V1), &v1_with("MODE_ON = 1;", ""));
    let i = only(&found);
    assert_eq!(i.rule, Rule::EnumValueRemoved);
    assert_eq!(i.old.as_deref(), Some("MODE_ON = 1"));
    let found = check(&reg(V1), &v1_with("MODE_ON = 1;", "MODE_ON = 2;"));
    let i = only(&found);
    assert_eq!(i.rule, Rule::EnumValueRenumbered);
    assert_eq!(i.new.as_deref(), Some("MODE_ON = 2"));
}

#[test]
fn enum_turned_into_a_message() {
    let found = check(
        &reg(V1),
        &v1_with(
            "enum Mode { MODE_OFF = 0; MODE_ON = 1; }",
            "message Mode {}",
        ),
    );
    assert!(found.iter().any(
        |i| i.rule == Rule::TypeChanged && i.location == Location::Definition("w.Mode".into())
    ));
}

#[test]
fn service_and_method_changes() {
    let found = check(&reg(V1), &v1_with("service Api", "service Api2"));
    assert_eq!(only(&found).rule, Rule::ServiceRemoved);
    let found = check(&reg(V1), &v1_with("rpc Get(", "rpc Fetch("));
    let i = only(&found);
    assert_eq!(i.rule, Rule::MethodRemoved);
    assert_eq!(i.old.as_deref(), Some("rpc Get(w.R) returns (w.R)"));
    let found = check(
        &reg(V1),
        &v1_with("returns (stream .w.R)", "returns (.w.R)"),
    );
    assert_eq!(only(&found).rule, Rule::StreamingChanged);
}

#[test]
fn compatible_additions() {
    let added =
        V1.replace(
            "fixed32 flags = 8;",
            "fixed32 flags = 8; map<string, .w.Extra> extra = 10;",
        )
        .replace("bytes raw = 6;", "bytes raw = 6; double other = 11;")
        .replace("MODE_ON = 1;", "MODE_ON = 1; MODE_AUTO = 2;")
        .replace(
            "rpc Get(.w.R) returns (.w.R);",
            "rpc Get(.w.R) returns (.w.R); rpc Put(stream .w.R) returns (.w.Extra);",
        ) + "message Extra { string note = 1; }\nservice More { rpc X(.w.R) returns (.w.R); }\n";
    assert_eq!(check(&reg(V1), &reg(&added)), vec![]);
    // The other way round, all of it is removal.
    assert!(check(&reg(&added), &reg(V1))
        .iter()
        .all(|i| i.rule.is_removal()));
}

#[test]
fn peers_ignore_removals_both_ways() {
    let v2 = v1_with("fixed32 flags = 8;", "fixed32 flags = 8; string note = 10;");
    assert_eq!(check_peers(&reg(V1), "w.R", &v2, "w.R"), vec![]);
    assert_eq!(check_peers(&v2, "w.R", &reg(V1), "w.R"), vec![]);
    let bad = v1_with("double celsius = 1", "float celsius = 1");
    let found = check_peers(&reg(V1), "w.R", &bad, "w.R");
    assert_eq!(only(&found).rule, Rule::TypeChanged);
    assert_eq!(
        only(&found).to_string(),
        "field `w.R.celsius` (number 1): was `double celsius = 1`, now `float celsius = 1` \
         (a field's type may only change within a wire-compatible group)"
    );
    let renamed = check_peers(&reg(V1), "w.R", &reg(V1), "w.S");
    assert_eq!(renamed[0].rule, Rule::DefinitionRemoved);
}

#[test]
fn nested_messages_are_compared() {
    let v1 = reg("package p; message A { message B { int32 x = 1; } .p.A.B b = 1; }");
    let v2 = reg("package p; message A { message B { string x = 1; } B b = 1; }");
    let i = only(&check(&v1, &v2)).clone();
    assert_eq!(i.location, field("p.A.B", "x", 1));
}

fn scalar() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(crate::schema::SCALARS)
}

prop_compose! {
    fn arb_message()(fields in proptest::collection::btree_map(1u32..200, (scalar(), 0u8..3), 0..12))
        -> MessageDef {
        let mut m = MessageDef::new("p.M");
        for (tag, (ty, label)) in fields {
            let label = match label { 0 => Label::Implicit, 1 => Label::Optional, _ => Label::Repeated };
            m.fields.push(FieldDef::new(format!("f{tag}"), tag, label, FieldType::Scalar(ty)));
        }
        m
    }
}

proptest! {
    #[test]
    fn compatible_with_itself_and_with_a_new_field(m in arb_message(), ty in scalar(), tag in 200u32..1000) {
        let mut old = SchemaRegistry::new();
        old.add_message(m.clone());
        prop_assert_eq!(check(&old, &old), vec![]);
        // The text form reads back to the same schema.
        let reread = parse(&old.schema_text()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(check(&old, &reread), vec![]);
        prop_assert_eq!(reread.schema_text(), old.schema_text());
        let mut grown = m;
        grown.fields.push(FieldDef::new("added", tag, Label::Implicit, FieldType::Scalar(ty)));
        let mut new = SchemaRegistry::new();
        new.add_message(grown);
        prop_assert_eq!(check(&old, &new), vec![]);
        prop_assert_eq!(check_peers(&old, "p.M", &new, "p.M"), vec![]);
        prop_assert_eq!(check_peers(&new, "p.M", &old, "p.M"), vec![]);
    }
}
