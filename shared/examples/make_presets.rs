//! Writes `shared/presets/chinchilla-epoch-refit.json` (the test `refit_preset_is_what_the_fitter_makes`
//! checks the shipped file against a fresh run).
//!
//! `cargo run --release -p p2law-shared --example make_presets`

fn main() {
    let report = p2law_shared::presets::make_refit().expect("the Epoch data fits");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/presets/chinchilla-epoch-refit.json");
    let json = serde_json::to_string_pretty(&report).expect("serialisable");
    std::fs::write(path, json + "\n").expect("write preset");
    println!("wrote {path}");
}
