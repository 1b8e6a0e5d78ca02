//! Every FineTuneJob and ModelDeployment YAML block in README.md and docs/ is admitted
//! by the CRD rules and passes local validation, as the files in examples/ are: an
//! example a reader copies from the documentation is one the test suite runs.

mod support;

use std::path::{Path, PathBuf};

/// README.md and every Markdown file under docs/.
fn documentation() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = vec![root.join("README.md")];
    files.extend(support::files_under(&root.join("docs"), &["md"]));
    files
}

/// The text of each ```yaml block, with the line its fence opens on, split into
/// its `---`-separated documents.
fn yaml_documents(markdown: &str) -> Vec<(usize, String)> {
    let mut documents = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (index, line) in markdown.lines().enumerate() {
        match current.as_mut() {
            None if line.trim() == "```yaml" => current = Some((index + 1, String::new())),
            None => {}
            Some(_) if line.trim() == "```" => documents.push(current.take().unwrap()),
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    documents
        .into_iter()
        .flat_map(|(line, text)| {
            let parts: Vec<String> = text.split("\n---\n").map(str::to_owned).collect();
            parts.into_iter().map(move |part| (line, part))
        })
        .collect()
}

/// A document that names Anneal's API group or one of its kinds; checked even when it
/// does not parse, so that a broken example fails rather than being skipped.
fn is_anneal_manifest(text: &str) -> bool {
    text.lines().any(|line| {
        let line = line.trim();
        line.starts_with("apiVersion: anneal.dev/")
            || line == "kind: FineTuneJob"
            || line == "kind: ModelDeployment"
    })
}

#[test]
fn every_manifest_in_the_docs_is_valid() {
    let mut checked = 0;
    for path in documentation() {
        let markdown = std::fs::read_to_string(&path).unwrap();
        for (line, text) in yaml_documents(&markdown) {
            if !is_anneal_manifest(&text) {
                continue;
            }
            let (_, problems) = support::admit_manifest(&text);
            assert_eq!(
                problems,
                Vec::<String>::new(),
                "{}: the yaml block at line {line}",
                path.display()
            );
            checked += 1;
        }
    }
    // The quick start, the cluster job and the ModelDeployment are shown in full.
    assert!(checked >= 3, "only {checked} manifests found in the docs");
}

#[test]
fn yaml_blocks_are_found_and_split_into_documents() {
    let markdown = "text\n```yaml\nkind: A\n---\nkind: B\n```\n```sh\nkind: C\n```\n";
    assert_eq!(
        yaml_documents(markdown),
        [(2, "kind: A".to_owned()), (2, "kind: B\n".to_owned())]
    );
}
