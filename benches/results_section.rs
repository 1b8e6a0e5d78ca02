//! Writing a benchmark's section of benches/RESULTS.md, shared by the Rust bench
//! binaries (each includes this file with `#[path]`): the section starting with the
//! text's first line (its `## ` header) is replaced, or appended when there is none.

use std::path::Path;

/// Replaces the section of `text`'s header in the RESULTS.md at `results_path`, or
/// appends `text` after a blank line.
pub fn write_section(results_path: &Path, text: &str) {
    let results = std::fs::read_to_string(results_path).unwrap();
    let header = text.lines().next().unwrap();
    let updated = match results.find(header) {
        Some(start) => {
            let end = results[start + header.len()..]
                .find("\n## ")
                .map_or(results.len(), |i| start + header.len() + i + 1);
            format!("{}{}{}", &results[..start], text, &results[end..])
        }
        None => format!("{}\n\n{}", results.trim_end_matches('\n'), text),
    };
    std::fs::write(results_path, updated).unwrap();
}
