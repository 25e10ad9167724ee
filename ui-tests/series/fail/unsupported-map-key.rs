use std::collections::BTreeMap;

#[tsercom::series]
pub struct Reading {
    pub by_time: BTreeMap<tsercom::Timestamp, f64>,
    pub by_bytes: BTreeMap<Vec<u8>, f64>,
}

fn main() {}
