#[tsercom::series]
pub struct WithCfg {
    pub kept: u32,
    #[cfg(any())]
    pub dropped: TypeThatDoesNotExist,
    #[cfg(all())]
    pub also_kept: f64,
}

fn main() {
    let _ = WithCfg { kept: 1, also_kept: 2.0 };
}
