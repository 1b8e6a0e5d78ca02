//! The commands `trainer train` prints for what comes next (`try it:`, `serve it:`,
//! `browse it:`, how to resume), written so that they run as printed.
//!
//! After `cargo run` nothing called `trainer` is on PATH, so a bare `trainer …`
//! would fail for the newcomer who just followed the README: the commands name
//! `trainer` only when that name on PATH is this very program (installed with
//! `cargo install --path trainer`), and this program's full path otherwise.
//! Every argument is quoted for a POSIX shell.

use std::path::{Path, PathBuf};

/// How to call this program from a shell: `trainer`, or its quoted full path.
pub fn trainer_command() -> String {
    let Ok(this) = std::env::current_exe().and_then(std::fs::canonicalize) else {
        return "trainer".to_owned();
    };
    if on_path_as_trainer(&this) {
        "trainer".to_owned()
    } else {
        shell_quote(&this.display().to_string())
    }
}

/// Whether the first `trainer` a shell finds on PATH is `this` program.
fn on_path_as_trainer(this: &Path) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path)
        .map(|dir| dir.join("trainer"))
        .find(|candidate| candidate.is_file())
        .and_then(|found| std::fs::canonicalize(found).ok())
        .is_some_and(|found| found == this)
}

/// `text` as one word for a POSIX shell: as it is when it holds nothing the shell
/// reads specially, else in single quotes.
pub fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// A command line: the program, then each argument quoted.
pub fn command_line<'a>(program: &str, args: impl IntoIterator<Item = &'a str>) -> String {
    let mut line = program.to_owned();
    for arg in args {
        line.push(' ');
        line.push_str(&shell_quote(arg));
    }
    line
}

/// What a finished local run prints: how to chat with the result and how to serve it.
pub struct NextSteps {
    /// `trainer generate` on one sample question, fed the chat on standard input.
    pub try_it: String,
    /// `trainer serve` with the result under its model id.
    pub serve_it: String,
}

/// What was trained, as `next_steps` needs it.
pub enum Trained<'a> {
    /// A LoRA adapter folder on top of the base model folder.
    Adapter { base: &'a Path, adapter: &'a Path },
    /// A whole model folder (full fine-tuning).
    Model { model: &'a Path },
}

/// The `try it` and `serve it` commands for a local result.
pub fn next_steps(trained: Trained, model_id: &str, question: &str) -> NextSteps {
    let trainer = trainer_command();
    let chat = serde_json::json!([{"role": "user", "content": question}]).to_string();
    // `…/quickstart/../models/anneal-tiny` reads better as where it really is.
    let text = |path: &Path| {
        std::fs::canonicalize(path)
            .unwrap_or_else(|_| path.to_path_buf())
            .display()
            .to_string()
    };
    let (generate_model, serve_model): (Vec<String>, Vec<String>) = match trained {
        Trained::Adapter { base, adapter } => (
            vec![
                "--model".into(),
                text(base),
                "--adapter".into(),
                text(adapter),
            ],
            vec![
                "--model".into(),
                text(base),
                "--adapter".into(),
                format!("{model_id}={}", text(adapter)),
            ],
        ),
        Trained::Model { model } => (
            vec!["--model".into(), text(model)],
            vec![
                "--model".into(),
                text(model),
                "--served-model-name".into(),
                model_id.to_owned(),
            ],
        ),
    };
    let generate_args = ["generate"]
        .into_iter()
        .chain(generate_model.iter().map(String::as_str))
        .chain(["--messages", "-"]);
    let serve_args = ["serve"]
        .into_iter()
        .chain(serve_model.iter().map(String::as_str))
        .chain(["--port", "8000"]);
    NextSteps {
        try_it: format!(
            "echo {} | {}",
            shell_quote(&chat),
            command_line(&trainer, generate_args)
        ),
        serve_it: command_line(&trainer, serve_args),
    }
}

/// `trainer console` over the runs folder `runs` (the one holding
/// `{namespace}/{job}/{run}`), to browse the run in a browser.
pub fn console_command(runs: &Path) -> String {
    let runs = std::fs::canonicalize(runs).unwrap_or_else(|_| runs.to_path_buf());
    let runs = runs.display().to_string();
    command_line(&trainer_command(), ["console", "--runs", runs.as_str()])
}

/// The command that continues a stopped run: the same manifest and the settings that
/// find the same run, plus `--resume`.
pub fn resume_command(
    manifest: &Path,
    output: Option<&str>,
    base_model: Option<&PathBuf>,
) -> String {
    let manifest = manifest.display().to_string();
    let base_model = base_model.map(|p| p.display().to_string());
    let mut args = vec!["train", manifest.as_str()];
    if let Some(output) = output {
        args.extend(["--output", output]);
    }
    if let Some(base_model) = &base_model {
        args.extend(["--base-model", base_model.as_str()]);
    }
    args.push("--resume");
    command_line(&trainer_command(), args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_the_shell_reads_specially_are_quoted() {
        assert_eq!(
            shell_quote("/srv/models/anneal-tiny"),
            "/srv/models/anneal-tiny"
        );
        assert_eq!(
            shell_quote("ft:tiny:job:ckpt-3=/a/b"),
            "ft:tiny:job:ckpt-3=/a/b"
        );
        assert_eq!(shell_quote("my runs/x"), "'my runs/x'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
    }

    #[test]
    fn a_question_with_quotes_reaches_generate_whole() {
        let steps = next_steps(
            Trained::Adapter {
                base: Path::new("/m"),
                adapter: Path::new("/runs/final"),
            },
            "ft:m:job:final",
            "What's \"up\"?",
        );
        let (echo, generate) = steps.try_it.split_once(" | ").unwrap();
        // What the shell hands to generate's standard input is the chat, quotes and all.
        let said = std::process::Command::new("sh")
            .args(["-c", echo])
            .output()
            .unwrap();
        let chat: serde_json::Value = serde_json::from_slice(&said.stdout).unwrap();
        assert_eq!(chat[0]["content"], "What's \"up\"?");
        assert_eq!(chat[0]["role"], "user");
        assert!(
            generate.ends_with(" generate --model /m --adapter /runs/final --messages -"),
            "{generate}"
        );
        assert!(
            steps
                .serve_it
                .ends_with(" serve --model /m --adapter ft:m:job:final=/runs/final --port 8000"),
            "{}",
            steps.serve_it
        );
    }

    #[test]
    fn resuming_names_where_the_run_is() {
        let line = resume_command(
            Path::new("jobs/my job.yaml"),
            Some("s3://bucket/runs"),
            None,
        );
        assert!(
            line.ends_with(" train 'jobs/my job.yaml' --output s3://bucket/runs --resume"),
            "{line}"
        );
    }
}
