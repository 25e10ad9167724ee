use super::*;

#[test]
fn packages_import_each_other_in_order() {
    let mut reg = SchemaRegistry::new();
    let mut a = MessageDef::new("b.A");
    a.fields.push(FieldDef::new(
        "x",
        1,
        Label::Implicit,
        FieldType::Named("a.X".into()),
    ));
    reg.add_message(a);
    reg.add_message(MessageDef::new("a.X"));
    let files = reg.render_files();
    assert_eq!(files[0].0, "a.proto");
    assert_eq!(files[1].0, "b.proto");
    assert!(files[1].1.contains("import \"a.proto\";"));
    assert!(files[1].1.contains(".a.X x = 1;"));
}

#[test]
fn conflicts_are_recorded() {
    let mut reg = SchemaRegistry::new();
    reg.add_message(MessageDef::new("p.M"));
    reg.add_message(MessageDef::new("p.M"));
    assert!(reg.conflicts().is_empty());
    let mut other = MessageDef::new("p.M");
    other.reserved_names.push("x".into());
    reg.add_message(other);
    assert_eq!(reg.conflicts().len(), 1);
}

#[test]
fn rendered_files_parse_back() {
    let mut reg = SchemaRegistry::new();
    let mut a = MessageDef::new("w.Reading");
    a.comment = Some("A reading.\n\nWith /* odd */ text.".into());
    a.reserved_tags.push((4, 6));
    a.reserved_names.push("old".into());
    a.fields.push(FieldDef::new(
        "t",
        1,
        Label::Optional,
        FieldType::Named("google.protobuf.Timestamp".into()),
    ));
    a.fields.push(FieldDef::new(
        "tags",
        2,
        Label::Implicit,
        FieldType::Map("string", Box::new(FieldType::Named("w.Mode".into()))),
    ));
    a.oneofs.push(OneofDef {
        name: "kind".into(),
        fields: vec![FieldDef::new(
            "x",
            3,
            Label::Implicit,
            FieldType::scalar("sint64"),
        )],
    });
    let mut inner = MessageDef::new("w.Reading.Inner");
    inner.fields.push(FieldDef::new(
        "v",
        1,
        Label::Repeated,
        FieldType::scalar("float"),
    ));
    a.nested.push(inner);
    reg.add_message(a);
    reg.add_enum(EnumDef {
        full_name: "w.Mode".into(),
        values: vec![("MODE_A".into(), 0), ("MODE_B".into(), -1)],
    });
    reg.add_service(ServiceDef {
        full_name: "w.Api".into(),
        comment: Some("Service.".into()),
        methods: vec![MethodDef {
            name: "Get".into(),
            request: "w.Reading".into(),
            response: "w.Reading".into(),
            client_streaming: true,
            server_streaming: false,
        }],
    });
    let file = reg.render_package("w");
    let back = parse(&file).map_err(|e| format!("{e}\n{file}")).unwrap();
    assert_eq!(back.schema_text(), reg.schema_text());
    assert!(compat::check(&reg, &back).is_empty());
    assert!(compat::check(&back, &reg).is_empty());
    let again = parse(&reg.schema_text()).unwrap();
    assert_eq!(again.schema_text(), reg.schema_text());
    let err = parse("package w;\nmessage A {\n  int32 x = ;\n}").unwrap_err();
    assert_eq!(err.line, 3, "{err}");
}
