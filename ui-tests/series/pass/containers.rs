use std::collections::{BTreeMap, HashMap};

use tsercom::{CallerId, Series, Timestamp};

#[tsercom::series]
pub struct Point {
    pub x: f64,
}

#[tsercom::series]
pub struct Containers {
    pub maybe: Option<u32>,
    pub values: Vec<f32>,
    #[series(sint)]
    pub deltas: Vec<i32>,
    #[series(fixed)]
    pub maybe_fixed: Option<u64>,
    pub names: Vec<String>,
    pub blobs: Vec<Vec<u8>>,
    pub by_name: HashMap<String, Point>,
    pub by_id: BTreeMap<u64, f64>,
    pub flags: HashMap<bool, bool>,
    pub point: Point,
    pub maybe_point: Option<Point>,
    pub points: Vec<Point>,
    pub at: Timestamp,
    pub maybe_at: Option<Timestamp>,
    pub times: Vec<Timestamp>,
    pub who: CallerId,
    pub everyone: Vec<CallerId>,
    pub seen: HashMap<String, Timestamp>,
}

fn main() {
    assert!(Containers::proto().contains("map<bool, bool> flags = 9;"));
}
