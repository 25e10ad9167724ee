// Derives the user writes are kept; the macro adds only the missing ones.
#[tsercom::series]
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mine {
    pub a: u32,
}

#[tsercom::series]
#[derive(Hash, PartialOrd, Ord)]
pub enum Kind {
    A,
    B,
}

fn main() {
    let _ = Mine::default() == Mine { a: 0 };
    let _ = Kind::A < Kind::B;
}
