mod inner {
    pub mod deeper {
        #[tsercom::series(package = "deep")]
        pub struct Leaf {
            pub x: i32,
        }
    }
}

#[tsercom::series]
pub struct Root {
    pub leaf: inner::deeper::Leaf,
    pub leaves: Vec<crate::inner::deeper::Leaf>,
}

fn main() {
    use tsercom::Series;
    assert_eq!(Root::proto_files().len(), 2);
}
