//! The `trainer` commands in README.md and docs/ against the real CLI: every shell
//! block that names `trainer` (or `cargo run ... --bin trainer --`) is read, each
//! command's subcommand and flags must be ones `trainer SUB --help` lists, the
//! synopses of a subcommand (commands with `[optional]` parts or placeholders such as
//! `DIR`) must together list every flag it has, and a block a newcomer can paste as it is (no
//! placeholders, no cluster) is run with `trainer` on PATH and must succeed.
//!
//! Cluster commands (kubectl, helm, docker) are not run here: the manifests they
//! apply are admitted by crds/tests/doc_examples.rs, and the chart and kustomize
//! folders are rendered and validated by scripts/test.sh. README's first command,
//! the quick start, is run by quickstart.rs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// A fenced `sh` block of a Markdown file, and where it starts.
struct ShellBlock {
    place: String,
    body: String,
}

fn shell_blocks() -> Vec<ShellBlock> {
    let repo = repo();
    let mut files = vec![repo.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo.join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);

    let mut blocks = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.strip_prefix(&repo).unwrap().display().to_string();
        let mut open: Option<(usize, String)> = None;
        for (index, line) in text.lines().enumerate() {
            match (&mut open, line) {
                (None, fence) if ["```sh", "```bash", "```shell"].contains(&fence.trim()) => {
                    open = Some((index + 1, String::new()));
                }
                (Some((start, body)), "```") => {
                    blocks.push(ShellBlock {
                        place: format!("{name}:{start}"),
                        body: std::mem::take(body),
                    });
                    open = None;
                }
                (Some((_, body)), line) => {
                    body.push_str(line);
                    body.push('\n');
                }
                (None, _) => {}
            }
        }
    }
    blocks
}

/// The block's commands: continuation lines joined, trailing `# comments` removed.
fn commands(body: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in body.lines() {
        let line = line.split("  #").next().unwrap().trim_end();
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                if !current.trim().is_empty() {
                    commands.push(current.trim().to_owned());
                }
                current.clear();
            }
        }
    }
    commands
}

/// `trainer SUB ...` as (SUB, the words after it), also when run through `cargo run`.
fn trainer_invocation(command: &str) -> Option<(String, Vec<String>)> {
    let rest = if let Some(rest) = command.strip_prefix("trainer ") {
        rest
    } else if command.starts_with("cargo run") && command.contains("--bin trainer -- ") {
        command.split_once("--bin trainer -- ").unwrap().1
    } else {
        return None;
    };
    let mut words = rest.split_whitespace().map(str::to_owned);
    let sub = words.next()?;
    Some((sub, words.collect()))
}

/// A synopsis rather than a command to paste: optional parts or placeholders.
fn is_synopsis(words: &[String]) -> bool {
    words.iter().any(|word| {
        word.contains('[')
            || word.contains('|')
            || ["DIR", "FILE", "JOB.yaml", "SOURCE", "URI", "RUN_ID"]
                .iter()
                .any(|placeholder| word.contains(placeholder))
    })
}

fn flags_in(words: &[String]) -> BTreeSet<String> {
    words
        .iter()
        .flat_map(|word| word.split(['[', ']', '(', ')', '|', '=']))
        .filter(|part| part.starts_with("--") && part.len() > 2)
        .map(|flag| flag.trim_end_matches("...").to_owned())
        .collect()
}

/// The flags `trainer SUB --help` lists, without --help and --version.
fn help_flags(sub: &str) -> BTreeSet<String> {
    let output = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args([sub, "--help"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "trainer {sub} --help: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Options are the lines that start with `-x, --name` or `--name`; flags named in
    // the descriptions are not options of their own.
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| {
            let line = line.trim_start();
            // `-h, --help`: the short form first.
            let line = match line.as_bytes() {
                [b'-', short, b',', b' ', ..] if short.is_ascii_alphanumeric() => &line[4..],
                _ => line,
            };
            line.starts_with("--")
                .then(|| line.split([' ', '=', '[', '<']).next().unwrap())
        })
        .filter(|flag| !["--help", "--version"].contains(flag))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_documented_trainer_command_uses_flags_the_cli_has() {
    let mut checked = 0;
    // Per subcommand: the flags its synopses list, and the flags it has.
    let mut synopses: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
    for block in shell_blocks() {
        for command in commands(&block.body) {
            let Some((sub, words)) = trainer_invocation(&command) else {
                continue;
            };
            let known = help_flags(&sub);
            let unknown: Vec<_> = flags_in(&words).difference(&known).cloned().collect();
            assert!(
                unknown.is_empty(),
                "{}: `trainer {sub}` has no {unknown:?} (it has {known:?})",
                block.place
            );
            if is_synopsis(&words) && command.starts_with("trainer ") {
                let (listed, _) = synopses
                    .entry(sub.clone())
                    .or_insert((BTreeSet::new(), known));
                listed.extend(flags_in(&words));
            }
            checked += 1;
        }
    }
    // The docs give a synopsis of each subcommand users run by hand, with every flag.
    for sub in [
        "train",
        "validate",
        "generate",
        "generate-image",
        "serve",
        "plan",
        "console",
    ] {
        let (listed, known) = synopses
            .get(sub)
            .unwrap_or_else(|| panic!("no synopsis of `trainer {sub}` in the docs"));
        let missing: Vec<_> = known.difference(listed).collect();
        assert!(
            missing.is_empty(),
            "the synopses of `trainer {sub}` leave out {missing:?}"
        );
    }
    assert!(
        checked >= 8,
        "only {checked} trainer commands found in the docs"
    );
}

#[test]
fn the_documented_blocks_a_newcomer_can_paste_run_as_printed() {
    let trainer = Path::new(env!("CARGO_BIN_EXE_trainer"));
    let path = format!(
        "{}:/usr/local/bin:/usr/bin:/bin",
        trainer.parent().unwrap().display()
    );
    let mut ran = Vec::new();
    for block in shell_blocks() {
        let commands = commands(&block.body);
        let invocations: Vec<_> = commands
            .iter()
            .filter_map(|c| trainer_invocation(c))
            .collect();
        let pasteable = !invocations.is_empty()
            && invocations.iter().all(|(_, words)| !is_synopsis(words))
            && commands.iter().all(|c| {
                trainer_invocation(c).is_some() || c.starts_with("echo ") || c.starts_with("cat ")
            });
        // `cargo run` builds a release binary: the one under test stands in for it.
        if !pasteable || block.body.contains("cargo run") {
            continue;
        }
        let scratch = tempfile::tempdir().unwrap();
        let script = block
            .body
            .replace("/tmp/", &format!("{}/", scratch.path().display()));
        let output = Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .current_dir(repo())
            .env("PATH", &path)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{} failed:\n{script}\n{}",
            block.place,
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            !output.stdout.is_empty(),
            "{} printed nothing:\n{script}",
            block.place
        );
        ran.push(block.place);
    }
    assert!(
        ran.iter()
            .any(|place| place.starts_with("docs/training-locally.md")),
        "no pasteable block ran: {ran:?}"
    );
}
