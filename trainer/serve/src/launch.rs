//! Starting the server on the chosen backend: load the base model, its tokenizer and
//! the adapters, bind the port, then run the [`engine`](crate::engine) on this thread
//! beside the HTTP server's thread until the server is done.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::{SystemTime, UNIX_EPOCH};

use burn::prelude::Backend;
use burn::tensor::DType;

use anneal_model::backend::BackendJob;
use anneal_model::chat::ModelTokenizer;
use anneal_model::llm::load_model;
use anneal_model::lora::peft::load_adapter;

use crate::ServeError;
use crate::connections::ConnectionLimits;
use crate::engine;
use crate::http::{ServedModel, ServerState};
use crate::http_server::serve_http;
use crate::prepare::Prepared;
use crate::serve_metrics::ServeMetrics;

impl BackendJob for Prepared {
    type Output = Result<(), ServeError>;

    fn run<B: Backend>(self, device: B::Device, dtype: DType) -> Self::Output {
        let (config, base) =
            load_model::<B>(&self.model_dir, &device, dtype).map_err(ServeError::Model)?;
        let tokenizer = ModelTokenizer::from_model_dir(&self.model_dir, &config.architecture)
            .map_err(ServeError::Tokenizer)?;
        tokenizer
            .check_vocabulary(config.vocab_size)
            .map_err(ServeError::Tokenizer)?;
        let mut served = vec![ServedModel {
            name: self.base_name.clone(),
            parent: None,
        }];
        // Each adapter rides on a clone of the base: tensors are shared, not copied.
        let mut models = vec![base.clone()];
        for (name, dir) in &self.adapters {
            let model = load_adapter(base.clone(), dir).map_err(|source| ServeError::Adapter {
                name: name.clone(),
                source,
            })?;
            models.push(model);
            served.push(ServedModel {
                name: name.clone(),
                parent: Some(self.base_name.clone()),
            });
        }
        let options = &self.options;
        let context_length = match options.max_model_len {
            Some(0) => return Err(ServeError::NoContext),
            Some(n) => n.min(config.max_position_embeddings),
            None => config.max_position_embeddings,
        };

        let listener = std::net::TcpListener::bind((options.host.as_str(), options.port)).map_err(
            |source| ServeError::Bind {
                host: options.host.clone(),
                port: options.port,
                source,
            },
        )?;
        listener
            .set_nonblocking(true)
            .map_err(ServeError::Listener)?;
        let address = listener.local_addr().map_err(ServeError::Listener)?;

        let metrics = ServeMetrics::new();
        let (submit, submissions) = std::sync::mpsc::channel();
        let state = Arc::new(ServerState {
            models: served,
            tokenizer: Arc::new(tokenizer.clone()),
            context_length,
            submit,
            in_flight: Arc::new(AtomicUsize::new(0)),
            max_in_flight: options.max_running + options.max_waiting,
            shutting_down: AtomicBool::new(false),
            metrics: metrics.clone(),
            started: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            body_timeout: options.header_timeout,
        });
        let names: Vec<&str> = state.models.iter().map(|m| m.name.as_str()).collect();
        eprintln!(
            "trainer serve: {} on http://{address}/v1 (context {context_length} tokens, {} running + {} waiting)",
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
        engine::run_engine(
            &models,
            submissions,
            options.max_running,
            context_length,
            &metrics,
        );
        server.join().map_err(|_| ServeError::HttpThreadPanicked)?
    }
}
