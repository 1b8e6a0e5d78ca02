//! `trainer fetch`: download a model or adapter folder from object storage, as a
//! serving pod's init container does before vLLM starts.

use std::path::PathBuf;
use std::process::ExitCode;

use anneal_sources::download_folder;

#[derive(clap::Args, Debug, Clone)]
pub struct FetchArgs {
    /// The folder: s3://bucket/prefix or file:///abs/dir.
    pub source: String,
    /// The local folder to write (replaced if it exists).
    pub target: PathBuf,
}

/// 0 fetched, 1 a storage failure a retry may fix, 2 a wrong URI.
pub fn run(args: &FetchArgs) -> ExitCode {
    if !(args.source.starts_with("s3://") || args.source.starts_with("file://")) {
        eprintln!(
            "trainer fetch: {}: expected an s3:// or file:// URI",
            args.source
        );
        return ExitCode::from(2);
    }
    match download_folder(args.source.trim_end_matches('/'), &args.target) {
        Ok(()) => {
            eprintln!(
                "trainer fetch: {} -> {}",
                args.source,
                args.target.display()
            );
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("trainer fetch: {}: {message}", args.source);
            ExitCode::from(1)
        }
    }
}
