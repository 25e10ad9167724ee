//! Quick Start: define a service, host it on a free port, connect, call it once, shut down.
//!
//! `cargo run --example quickstart_rpc` prints `Hello, tsercom!`.

use std::time::Duration;

use tsercom::rpc::Status;
use tsercom::transport::Server;

/// The service, declared in Rust: no `.proto` file, no build script.
#[tsercom::runtime(data = Greeting)]
pub mod hello {
    use tsercom::rpc::Status;

    /// A name to greet.
    #[tsercom::series]
    pub struct Name {
        /// Who.
        pub name: String,
    }

    /// The greeting.
    #[tsercom::series]
    pub struct Greeting {
        /// What to say.
        pub text: String,
    }

    /// One unary method.
    pub trait Greeter {
        /// Greets `request.name`.
        async fn greet(&self, request: Name) -> Result<Greeting, Status>;
    }
}

/// The implementation.
struct Greeter;

impl hello::Greeter for Greeter {
    async fn greet(&self, request: hello::Name) -> Result<hello::Greeting, Status> {
        let text = format!("Hello, {}!", request.name);
        Ok(hello::Greeting { text })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Host on 127.0.0.1, port 0: the system picks a free port.
    let server = Server::builder()
        .add_service(hello::GreeterServer::new(Greeter))
        .serve("127.0.0.1:0".parse()?)
        .await?;

    // Connect and call.
    let client = hello::GreeterClient::connect([server.local_addr()]).await?;
    let reply = client
        .greet(hello::Name {
            name: "tsercom".into(),
        })
        .await?;
    println!("{}", reply.text);

    // Shut down: in-flight calls get up to 5 s to finish.
    drop(client);
    server.shutdown(Duration::from_secs(5)).await?;
    Ok(())
}
