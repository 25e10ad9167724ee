//! A user crate whose Cargo.toml renames tsercom to `my_ts` (and that has no implicit
//! prelude): `#[my_ts::series(crate = "::my_ts")]` must compile and work.

#![no_implicit_prelude]

/// A reading.
#[::my_ts::series(crate = "::my_ts", interpolate)]
pub struct Reading {
    /// Degrees.
    pub celsius: f64,
    /// When.
    pub at: ::my_ts::Timestamp,
}

/// A command.
#[::my_ts::series(crate = "::my_ts")]
pub enum Command {
    /// Go.
    Go {
        /// How fast.
        speed: f64,
    },
    /// Stop.
    Stop,
    /// A level.
    Level(Level),
}

/// A level.
#[::my_ts::series(crate = "::my_ts")]
pub enum Level {
    /// Low.
    Low,
    /// High.
    High,
}

#[cfg(test)]
mod tests {
    use ::my_ts::__private::prost::Message;
    use ::my_ts::Series;
    use ::std::assert_eq;

    #[test]
    fn renamed_facade_works() {
        let r = super::Reading {
            celsius: 1.5,
            at: ::my_ts::Timestamp::from_nanos(7),
        };
        let back = super::Reading::decode(r.encode_to_vec().as_slice());
        assert_eq!(back.ok(), ::std::option::Option::Some(r));
        let c = super::Command::Level(super::Level::High);
        let back = super::Command::decode(c.encode_to_vec().as_slice());
        assert_eq!(back.ok(), ::std::option::Option::Some(c));
        assert_eq!(super::Reading::MESSAGE_NAME, "ui_tests_renamed.Reading");
    }
}
