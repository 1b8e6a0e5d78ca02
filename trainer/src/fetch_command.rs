//! `trainer fetch`: bring a model or adapter folder onto this machine, as a serving
//! pod's init container does before vLLM starts. Object storage is downloaded into the
//! target; a hub model is fetched into the model cache (`ANNEAL_MODEL_CACHE`) and the
//! target made a link to its snapshot, so a cache shared by pods holds one copy.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anneal_sources::{FolderSource, download_folder, make_local};

#[derive(clap::Args, Debug, Clone)]
pub struct FetchArgs {
    /// The folder: s3://bucket/prefix, file:///abs/dir, hf://ORG/NAME[@REVISION] or
    /// modelscope://ORG/NAME[@REVISION].
    pub source: String,
    /// The local folder to write (replaced if it exists).
    pub target: PathBuf,
}

/// 0 fetched, 1 a failure a retry may fix, 2 a wrong URI, repository or permission.
pub fn run(args: &FetchArgs) -> ExitCode {
    let source = match FolderSource::from_flag(&args.source, "trainer fetch") {
        Ok(FolderSource::Local(_)) if !args.source.starts_with("file://") => {
            eprintln!(
                "trainer fetch: {}: expected an s3://, file://, hf:// or modelscope:// URI",
                args.source
            );
            return ExitCode::from(2);
        }
        Ok(source) => source,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    let fetched = match &source {
        FolderSource::Hub(_) => make_local(&source, &args.target, "trainer fetch")
            .map_err(|error| (error.may_pass_on_retry(), error.to_string()))
            .and_then(|snapshot| link(&snapshot, &args.target).map_err(|error| (true, error))),
        _ => download_folder(args.source.trim_end_matches('/'), &args.target)
            .map_err(|error| (true, format!("trainer fetch: {}: {error}", args.source))),
    };
    match fetched {
        Ok(()) => {
            eprintln!(
                "trainer fetch: {} -> {}",
                args.source,
                args.target.display()
            );
            ExitCode::SUCCESS
        }
        Err((retry, message)) => {
            eprintln!("{message}");
            ExitCode::from(if retry { 1 } else { 2 })
        }
    }
}

/// Makes `target` a symbolic link to `snapshot`, replacing what is there.
fn link(snapshot: &Path, target: &Path) -> Result<(), String> {
    let describe = |error: std::io::Error| format!("trainer fetch: {}: {error}", target.display());
    match std::fs::symlink_metadata(target) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(target).map_err(describe)?,
        Ok(_) => std::fs::remove_file(target).map_err(describe)?,
        Err(_) => {}
    }
    if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(describe)?;
    }
    std::os::unix::fs::symlink(snapshot, target).map_err(describe)
}
