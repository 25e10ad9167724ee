use tsercom::{Interpolate, Series, Timestamp};

#[tsercom::series(
    name = "Sample",
    package = "lab.v2",
    interpolate,
    reserved(2, 7..=9, 12..14),
    reserved_names("legacy")
)]
pub struct RustSample {
    pub value: f64,
    #[series(tag = 3, name = "when")]
    pub at: Timestamp,
    #[series(tag = 10)]
    pub count: u64,
    pub gain: Option<f32>,
}

fn main() {
    assert_eq!(RustSample::MESSAGE_NAME, "lab.v2.Sample");
    let text = RustSample::proto();
    assert!(text.contains("reserved 2, 7 to 9, 12 to 13;"), "{text}");
    assert!(text.contains("optional float gain = 11;"), "{text}");
    let a = RustSample::default();
    let _ = RustSample::interpolate(&a, &a, 0.5);
}
