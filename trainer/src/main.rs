//! The `trainer` command line.

use std::process::ExitCode;

use anneal_trainer::console_command::{self, ConsoleArgs};
use anneal_trainer::doctor_command::{self, DoctorArgs};
use anneal_trainer::evaluate_command::{self, EvaluateArgs};
use anneal_trainer::fetch_command::{self, FetchArgs};
use anneal_trainer::generate_command::{self, GenerateArgs};
use anneal_trainer::generate_image_command::{self, GenerateImageArgs};
use anneal_trainer::plan_command::{self, PlanArgs};
use anneal_trainer::publish_command::{self, PublishArgs};
use anneal_trainer::serve_command::{self, ServeArgs};
use anneal_trainer::train_command::{self, TrainArgs};
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
    /// Train the FineTuneJob in a manifest, here (local mode) or in a trainer pod.
    Train(TrainArgs),
    /// Check a JSONL dataset, or a FineTuneJob manifest and the local datasets it names.
    Validate(ValidateArgs),
    /// Compare models on held-out chats: the ModelEvaluation in a manifest, here.
    Evaluate(EvaluateArgs),
    /// The memory a FineTuneJob needs per GPU, and the micro-batch that fits.
    Plan(PlanArgs),
    /// Continue a prompt or a chat with a model folder.
    Generate(GenerateArgs),
    /// Make images from a prompt with a FLUX.1 pipeline folder, written as PNG files.
    GenerateImage(GenerateImageArgs),
    /// Serve a model and its LoRA adapters behind an OpenAI-compatible API.
    Serve(ServeArgs),
    /// Download a model or adapter folder from object storage or a hub (a serving pod's init container).
    Fetch(FetchArgs),
    /// Save a checkpoint to a model repository (Hugging Face, s3://, a folder), merged or as an adapter.
    Publish(PublishArgs),
    /// Check this machine: the backend, a matmul against a reference, one LoRA training step.
    Doctor(DoctorArgs),
    /// Browse the runs `trainer train` wrote: losses, checkpoints' answers side by side, logs.
    Console(ConsoleArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    anneal_trainer::heap::keep_freed_tensor_memory();
    match cli.command {
        Command::Train(args) => train_command::run(args),
        Command::Validate(args) => validate_command::run(&args),
        Command::Evaluate(args) => evaluate_command::run(args),
        Command::Plan(args) => plan_command::run(&args),
        Command::Generate(args) => generate_command::run(args),
        Command::GenerateImage(args) => generate_image_command::run(args),
        Command::Serve(args) => serve_command::run(args),
        Command::Fetch(args) => fetch_command::run(&args),
        Command::Publish(args) => publish_command::run(args),
        Command::Doctor(args) => doctor_command::run(&args),
        Command::Console(args) => console_command::run(&args),
    }
}
