//! The `trainer` command line.

use std::process::ExitCode;

use anneal_trainer::validate_command::{self, ValidateArgs};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "trainer",
    version,
    about = "Anneal trainer: fine-tune, generate, serve and check data"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a JSONL dataset, or a FineTuneJob manifest and the local datasets it names.
    Validate(ValidateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate(args) => validate_command::run(&args),
    }
}
