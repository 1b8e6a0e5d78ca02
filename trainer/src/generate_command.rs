//! `trainer generate`: load a model folder and continue a raw prompt or a chat.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anneal_crds::dataset::ChatMessage;
use burn::prelude::Backend;
use burn::tensor::DType;

use anneal_model::backend::{BackendError, BackendJob, run_on};
use anneal_model::chat::{ChatError, ModelTokenizer};
use anneal_model::generate::{SamplingParams, generate};
use anneal_model::llm::{ModelError, load_model};
use anneal_model::lora::peft::{AdapterError, load_adapter};
use anneal_sources::{SourceError, check_local_folder};

use crate::device_arg::DeviceArg;

#[derive(clap::Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["prompt", "messages", "prompt_ids"])))]
pub struct GenerateArgs {
    /// A Hugging Face model folder (config.json, tokenizer.json, *.safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// A LoRA adapter folder in PEFT format (adapter_config.json, adapter_model.safetensors).
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Raw text, tokenized as it is, with no chat template.
    #[arg(long)]
    pub prompt: Option<String>,
    /// A JSON file with an OpenAI-style message list, formatted with the model's chat
    /// template; `-` reads it from standard input.
    #[arg(long)]
    pub messages: Option<PathBuf>,
    /// Token ids, comma-separated, fed to the model as they are: to compare greedy
    /// continuations with another implementation's on the same ids (scripts/gpu/check.sh
    /// against transformers' fixtures), with no tokenizer round trip in between.
    #[arg(long, value_delimiter = ',')]
    pub prompt_ids: Option<Vec<u32>>,
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop at this text (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Print the result as `{"token_ids": [...], "text": "..."}` on the last line.
    #[arg(long)]
    pub json: bool,
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
}

/// Why generation failed; each message names the flag or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("--temperature must be 0 or more, got {0}")]
    Temperature(f32),
    #[error("--top-p must be in (0, 1], got {0}")]
    TopP(f32),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Adapter(#[from] AdapterError),
    #[error(transparent)]
    Tokenizer(#[from] ChatError),
    #[error("{}: {source}", path.display())]
    ReadMessages {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not JSON: {source}", path.display())]
    MessagesNotJson {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "{}: expected a list of {{\"role\": \"system\"|\"user\"|\"assistant\", \"content\": \"...\"}}: {source}",
        path.display()
    )]
    NotMessages {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("--prompt-ids: {id} is past the model's vocabulary of {vocab_size}")]
    PromptIdPastVocabulary { id: u32, vocab_size: usize },
    #[error("writing the output: {0}")]
    Output(#[source] std::io::Error),
}

/// Runs the command: 0 when the text was printed, 2 when it could not be generated.
pub fn run(args: GenerateArgs) -> ExitCode {
    match check_and_generate(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("trainer generate: {error}");
            ExitCode::from(2)
        }
    }
}

fn check_and_generate(args: GenerateArgs) -> Result<(), GenerateError> {
    if args.temperature.is_nan() || args.temperature < 0.0 {
        return Err(GenerateError::Temperature(args.temperature));
    }
    if !(0.0..=1.0).contains(&args.top_p) || args.top_p == 0.0 {
        return Err(GenerateError::TopP(args.top_p));
    }
    check_local_folder(&args.model, "--model")?;
    if let Some(adapter) = &args.adapter {
        check_local_folder(adapter, "--adapter")?;
    }
    run_on(args.device.into(), GenerateJob(args))?
}

struct GenerateJob(GenerateArgs);

impl BackendJob for GenerateJob {
    type Output = Result<(), GenerateError>;

    fn run<B: Backend>(self, device: B::Device, dtype: DType) -> Self::Output {
        let args = self.0;
        let (config, model) = load_model::<B>(&args.model, &device, dtype)?;
        let model = match &args.adapter {
            Some(dir) => load_adapter(model, dir)?,
            None => model,
        };
        let tokenizer = ModelTokenizer::from_model_dir(&args.model, &config.architecture)?;
        tokenizer.check_vocabulary(config.vocab_size)?;
        let prompt = match (&args.prompt, &args.messages, &args.prompt_ids) {
            (_, _, Some(ids)) => {
                if let Some(&id) = ids.iter().find(|&&id| id as usize >= config.vocab_size) {
                    return Err(GenerateError::PromptIdPastVocabulary {
                        id,
                        vocab_size: config.vocab_size,
                    });
                }
                ids.clone()
            }
            (Some(text), _, None) => tokenizer.encode(text, false)?,
            (None, Some(path), None) => {
                let messages = read_messages(path)?;
                tokenizer.encode_chat(&messages, true)?.ids
            }
            (None, None, None) => {
                unreachable!("clap requires --prompt, --messages or --prompt-ids")
            }
        };
        let params = SamplingParams {
            max_new_tokens: args.max_new_tokens,
            temperature: args.temperature,
            top_p: args.top_p,
            seed: args.seed,
            stop: args.stop.clone(),
        };
        let decode = |ids: &[u32]| tokenizer.decode(ids, true).unwrap_or_default();
        let generation = generate(
            &model,
            &prompt,
            tokenizer.eos_token_ids(),
            &params,
            decode,
            |_| {},
        );
        let mut stdout = std::io::stdout();
        let line = if args.json {
            serde_json::json!({"token_ids": generation.token_ids, "text": generation.text})
                .to_string()
        } else {
            generation.text
        };
        writeln!(stdout, "{line}").map_err(GenerateError::Output)?;
        Ok(())
    }
}

/// An OpenAI-style message list: a JSON array, or an object with a `messages` array.
fn read_messages(path: &PathBuf) -> Result<Vec<ChatMessage>, GenerateError> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    }
    .map_err(|source| GenerateError::ReadMessages {
        path: path.clone(),
        source,
    })?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| GenerateError::MessagesNotJson {
            path: path.clone(),
            source,
        })?;
    let list = value.get("messages").cloned().unwrap_or(value);
    serde_json::from_value(list).map_err(|source| GenerateError::NotMessages {
        path: path.clone(),
        source,
    })
}
