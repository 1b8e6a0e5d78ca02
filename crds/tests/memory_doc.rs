//! docs/memory.md's fit tables are what the memory plan computes today: a change to a
//! formula, a constant or a model shape that moves a figure fails here until crdgen
//! rewrites the page.

use std::path::Path;

use anneal_crds::crdgen::memory_page;
use anneal_crds::memory_plan::fit_table;

#[test]
fn the_fit_tables_in_docs_memory_md_match_the_plan() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let committed = std::fs::read_to_string(root.join(fit_table::DOC_PATH)).unwrap();
    let regenerated = memory_page(&root).unwrap();
    assert!(
        committed == regenerated.text,
        "{} is out of date; run `cargo run -p anneal-crds --bin crdgen` and commit. The plan now says:\n{}",
        fit_table::DOC_PATH,
        fit_table::markdown()
    );
    assert!(committed.contains("| Qwen/Qwen2.5-7B-Instruct | 14.2 GiB |"));
}
