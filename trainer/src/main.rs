//! The `trainer` command line.

use std::process::ExitCode;

use anneal_trainer::generate_command::{self, GenerateArgs};
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
    /// Continue a prompt or a chat with a model folder.
    Generate(GenerateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate(args) => validate_command::run(&args),
        Command::Generate(args) => match generate_command::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("trainer generate: {message}");
                ExitCode::from(2)
            }
        },
    }
}
