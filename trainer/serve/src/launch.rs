//! Starting the server on the chosen backend: load the base model (a chat model, or
//! an image pipeline when the folder has a diffusers `model_index.json`) and its
//! adapters, bind the port, then run the generator (the chat [`engine`], or the
//! image worker) on this thread beside the HTTP server's thread until the server is
//! done.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use burn::prelude::Backend;
use burn::tensor::DType;

use anneal_image::flux::lora::{FluxLora, attach_loras};
use anneal_image::pipeline::{FluxPipeline, PipelineDefaults};
use anneal_model::backend::BackendJob;
use anneal_model::chat::ModelTokenizer;
use anneal_model::llm::load_model;
use anneal_model::lora::peft::load_adapter;

use crate::ServeError;
use crate::connections::ConnectionLimits;
use crate::engine;
use crate::http::{ChatSide, Generator, ImageSide, ServedModel, ServerState};
use crate::http_server::serve_http;
use crate::image_worker::run_image_worker;
use crate::prepare::Prepared;
use crate::runtime_lora::RuntimeLora;
use crate::serve_metrics::ServeMetrics;

impl BackendJob for Prepared {
    type Output = Result<(), ServeError>;

    fn run<B: Backend>(self, device: B::Device, dtype: DType) -> Self::Output {
        if self.model_dir.join("model_index.json").is_file() {
            serve_images::<B>(&self, &device, dtype)
        } else {
            serve_chat::<B>(&self, &device, dtype)
        }
    }
}

/// The served names: the base model, then each adapter on it.
fn served_models(prepared: &Prepared) -> Vec<ServedModel> {
    let mut served = vec![ServedModel {
        name: prepared.base_name.clone(),
        parent: None,
        index: 0,
        source: None,
    }];
    // `prepare` took the adapters from `--adapter NAME=SOURCE` in order.
    let sources = (prepared.options.adapters.iter())
        .map(|value| value.split_once('=').map(|(_, source)| source.to_owned()));
    served.extend((prepared.adapters.iter().zip(sources).enumerate()).map(
        |(i, ((name, _), source))| ServedModel {
            name: name.clone(),
            parent: Some(prepared.base_name.clone()),
            index: i + 1,
            source,
        },
    ));
    served
}

fn serve_chat<B: Backend>(
    prepared: &Prepared,
    device: &B::Device,
    dtype: DType,
) -> Result<(), ServeError> {
    let (config, base) =
        load_model::<B>(&prepared.model_dir, device, dtype).map_err(ServeError::Model)?;
    let tokenizer = ModelTokenizer::from_model_dir(&prepared.model_dir, &config.architecture)
        .map_err(ServeError::Tokenizer)?;
    tokenizer
        .check_vocabulary(config.vocab_size)
        .map_err(ServeError::Tokenizer)?;
    // Each adapter rides on a clone of the base: tensors are shared, not copied.
    let mut models = vec![base.clone()];
    for (name, dir) in &prepared.adapters {
        let model = load_adapter(base.clone(), dir).map_err(|source| ServeError::Adapter {
            name: name.clone(),
            source,
        })?;
        models.push(model);
    }
    let options = &prepared.options;
    let context_length = match options.max_model_len {
        Some(0) => return Err(ServeError::NoContext),
        Some(n) => n.min(config.max_position_embeddings),
        None => config.max_position_embeddings,
    };
    let (submit, submissions) = std::sync::mpsc::channel();
    let generator = Generator::Chat(ChatSide {
        tokenizer: Arc::new(tokenizer),
        context_length,
        submit,
    });
    let detail = format!("context {context_length} tokens");
    let (server, metrics) = start_http(prepared, generator, &detail)?;
    engine::run_engine(
        &models,
        submissions,
        options.max_running,
        context_length,
        &metrics,
    );
    server.join().map_err(|_| ServeError::HttpThreadPanicked)?
}

fn serve_images<B: Backend>(
    prepared: &Prepared,
    device: &B::Device,
    dtype: DType,
) -> Result<(), ServeError> {
    let defaults = PipelineDefaults::read(&prepared.model_dir).map_err(ServeError::ImageModel)?;
    let mut pipe =
        FluxPipeline::<B>::load(&prepared.model_dir, device, dtype, defaults.prompt_tokens())
            .map_err(ServeError::ImageModel)?;
    // Each adapter rides on a clone of the base transformer: tensors are shared.
    let mut transformers = vec![pipe.transformer.clone()];
    for (name, path) in &prepared.adapters {
        let mut transformer = pipe.transformer.clone();
        FluxLora::read(path)
            .and_then(|lora| attach_loras(&mut transformer, &[lora]))
            .map_err(|source| ServeError::ImageAdapter {
                name: name.clone(),
                source,
            })?;
        transformers.push(transformer);
    }
    let (submit, jobs) = std::sync::mpsc::channel();
    let step = 2 * pipe.vae_config.scale();
    let (width, height) = defaults.size();
    let generator = Generator::Image(ImageSide {
        submit,
        size_step: step,
        default_steps: defaults.steps(&pipe.transformer_config),
        default_guidance: defaults.guidance(),
        // The pipeline's size (FLUX.1's 1024x1024), or the nearest multiples of a small
        // VAE's step below it.
        default_size: (width / step * step, height / step * step),
    });
    let detail = format!("images, sizes in multiples of {step} px");
    let (server, _metrics) = start_http(prepared, generator, &detail)?;
    run_image_worker(&mut pipe, &transformers, jobs);
    server.join().map_err(|_| ServeError::HttpThreadPanicked)?
}

/// Binds the port and starts the HTTP server's thread.
fn start_http(
    prepared: &Prepared,
    generator: Generator,
    detail: &str,
) -> Result<(JoinHandle<Result<(), ServeError>>, ServeMetrics), ServeError> {
    let options = &prepared.options;
    let listener = TcpListener::bind((options.host.as_str(), options.port)).map_err(|source| {
        ServeError::Bind {
            host: options.host.clone(),
            port: options.port,
            source,
        }
    })?;
    listener
        .set_nonblocking(true)
        .map_err(ServeError::Listener)?;
    let address: SocketAddr = listener.local_addr().map_err(ServeError::Listener)?;
    let metrics = ServeMetrics::new();
    let models = served_models(prepared);
    // An image server with the flag answers the endpoints with what it serves instead.
    let runtime_lora = (options.runtime_lora)
        .then(|| RuntimeLora::new(prepared.work_dir.clone(), options.max_loras, models.len()))
        .map(|runtime| runtime.with_token(options.runtime_lora_token.clone()))
        .map(|runtime| runtime.with_startup_file(options.adapters_file.clone()));
    let names: Vec<String> = models.iter().map(|m| m.name.clone()).collect();
    let state = Arc::new(ServerState {
        models: RwLock::new(models),
        runtime_lora,
        generator,
        in_flight: Arc::new(AtomicUsize::new(0)),
        max_in_flight: options.max_running + options.max_waiting,
        shutting_down: AtomicBool::new(false),
        metrics: metrics.clone(),
        started: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        body_timeout: options.header_timeout,
    });
    let runtime = match (&state.runtime_lora, &state.generator) {
        (Some(runtime), Generator::Chat(_)) => {
            format!(", adapters loaded at runtime up to {}", runtime.max_loras)
        }
        _ => String::new(),
    };
    eprintln!(
        "trainer serve: {} on http://{address}/v1 ({detail}, {} running + {} waiting{runtime})",
        names.join(", "),
        options.max_running,
        options.max_waiting
    );
    let limits = ConnectionLimits {
        max_connections: options.max_connections,
        header_timeout: options.header_timeout,
        shutdown_grace: options.shutdown_grace,
    };
    let server = std::thread::Builder::new()
        .name("http".to_owned())
        .spawn(move || serve_http(listener, state, limits))
        .map_err(ServeError::HttpThread)?;
    Ok((server, metrics))
}
