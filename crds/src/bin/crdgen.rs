//! Writes the CRD YAML for every Anneal kind into deploy/crds/ and charts/anneal/crds/
//! and its API reference into docs/reference/,
//! or with `--check` only reports whether the committed files are out of date.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(about = "Generate Anneal's CRD YAML and API reference from the Rust types")]
struct Args {
    /// Repository root to write under.
    #[arg(long, default_value_os_t = default_root())]
    root: PathBuf,
    /// Write nothing; exit 1 when a committed file differs from the types.
    #[arg(long)]
    check: bool,
}

fn default_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.check {
        let stale = anneal_crds::crdgen::stale_files(&args.root);
        for path in &stale {
            eprintln!("out of date: {}", path.display());
        }
        if stale.is_empty() {
            return ExitCode::SUCCESS;
        }
        eprintln!("run `cargo run -p anneal-crds --bin crdgen` and commit the result");
        return ExitCode::FAILURE;
    }
    match anneal_crds::crdgen::write_all(&args.root) {
        Ok(paths) => {
            for path in paths {
                println!("wrote {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("crdgen: {err}");
            ExitCode::FAILURE
        }
    }
}
