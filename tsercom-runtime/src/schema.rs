//! Schema descriptions of series types: a registry of protobuf message and enum definitions,
//! rendered to `.proto` text and hashed to a stable fingerprint. Defined in the
//! `tsercom-proto` crate (the one home of the protocol's names and model) and re-exported.
//!
//! ```
//! # use tsercom_runtime as tsercom;
//! use tsercom::schema::{FieldDef, FieldType, Label, MessageDef, SchemaRegistry};
//!
//! let mut reg = SchemaRegistry::new();
//! let mut msg = MessageDef::new("weather.Reading");
//! msg.fields.push(FieldDef::new("celsius", 1, Label::Implicit, FieldType::scalar("double")));
//! reg.add_message(msg);
//! let files = reg.render_files();
//! assert_eq!(files[0].0, "weather.proto");
//! assert!(files[0].1.contains("double celsius = 1;"));
//! ```

pub use tsercom_proto::schema::*;
