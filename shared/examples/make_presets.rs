//! Writes the shipped presets that p2law fits itself: `shared/presets/chinchilla-epoch-refit.json`
//! (Epoch AI's Chinchilla points) and `shared/presets/p2-study.json` (the P² study's presets, and
//! the groups refused one). The tests `refit_preset_is_what_the_fitter_makes` and
//! `study_presets_are_what_the_fitter_makes` check the shipped files against a fresh run.
//!
//! `cargo run --release -p p2law-shared --example make_presets [-- --study-only]`

fn main() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/presets");
    let write = |name: &str, json: String| {
        let path = format!("{dir}/{name}");
        let tmp = format!("{path}.tmp");
        std::fs::write(&tmp, json + "\n").expect("write preset");
        std::fs::rename(&tmp, &path).expect("rename preset");
        println!("wrote {path}");
    };
    if !std::env::args().any(|a| a == "--study-only") {
        let report = p2law_shared::presets::make_refit().expect("the Epoch data fits");
        write("chinchilla-epoch-refit.json", serde_json::to_string_pretty(&report).expect("serialisable"));
    }
    let data = match p2law_shared::presets::study_data() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let study = p2law_shared::presets::make_study_presets(&data);
    for p in &study.presets {
        println!("{}: {}", p.id, p.provenance);
    }
    for r in &study.refused {
        println!("{}: no preset: {}", r.id, r.reason);
    }
    write("p2-study.json", serde_json::to_string_pretty(&study).expect("serialisable"));
}
