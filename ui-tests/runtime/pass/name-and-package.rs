// `name` sets the runtime name and mDNS type, `package` the protobuf package; no event type
// and no service trait are needed.
#[tsercom::runtime(data = Sample, name = "Lab_Instruments", package = "lab.v1")]
mod instruments {
    #[tsercom::series]
    pub struct Sample {
        pub volts: f32,
    }
}

fn main() {
    use tsercom::{Runtime, Series};
    assert_eq!(<instruments::Runtime as Runtime>::NAME, "Lab_Instruments");
    assert_eq!(<instruments::Runtime as Runtime>::SERVICE, "lab.v1.Stream");
    assert_eq!(instruments::SERVICE_TYPE, "_lab-instruments._tcp.local.");
    assert_eq!(<instruments::Sample as Series>::MESSAGE_NAME, "lab.v1.Sample");
    assert!(instruments::proto().contains("package lab.v1;"));
    assert!(instruments::proto().contains("message NoEvent {"));
}
