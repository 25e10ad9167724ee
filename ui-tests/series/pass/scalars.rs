use tsercom::Series;

#[tsercom::series]
pub struct Scalars {
    pub a: f64,
    pub b: f32,
    pub c: i32,
    pub d: i64,
    pub e: u32,
    pub f: u64,
    pub g: bool,
    pub h: String,
    pub i: Vec<u8>,
    pub j: tsercom::__private::bytes::Bytes,
    #[series(sint)]
    pub k: i32,
    #[series(sint)]
    pub l: i64,
    #[series(fixed)]
    pub m: u32,
    #[series(fixed)]
    pub n: u64,
    #[series(fixed)]
    pub o: i32,
    #[series(fixed)]
    pub p: i64,
}

fn main() {
    let text = Scalars::proto();
    assert!(text.contains("sfixed64 p = 16;"), "{text}");
    let _ = Scalars::fingerprint();
}
