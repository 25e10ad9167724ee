// Generated code uses absolute paths only: it compiles without the prelude.
#![no_implicit_prelude]

#[::tsercom::runtime(data = Reading)]
pub mod weather {
    #[::tsercom::series]
    pub struct Reading {
        pub celsius: f64,
    }

    pub trait Station {
        async fn latest(
            &self,
            request: Reading,
        ) -> ::core::result::Result<Reading, ::tsercom::rpc::Status>;
        async fn bidi(
            &self,
            request: ::tsercom::rpc::Streaming<Reading>,
        ) -> ::core::result::Result<::tsercom::rpc::ResponseStream<Reading>, ::tsercom::rpc::Status>;
    }
}

fn main() {
    let _ = weather::proto();
}
