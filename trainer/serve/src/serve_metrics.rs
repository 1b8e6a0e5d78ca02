//! The server's Prometheus metrics at `/metrics`: requests by outcome, tokens in and
//! out, time to first token, decoding speed, how many requests run and wait, the KV
//! cache's size, and images generated.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

use super::engine::EngineGauges;

/// Every metric the server exports, in one registry.
#[derive(Clone)]
pub struct ServeMetrics {
    registry: Registry,
    /// `anneal_serve_requests_total{model, outcome}`: outcome is `stop`, `length`,
    /// `cancelled` (the client left), `error`, or the refusal's HTTP status.
    pub requests: IntCounterVec,
    /// `anneal_serve_prompt_tokens_total{model}`.
    pub prompt_tokens: IntCounterVec,
    /// `anneal_serve_generated_tokens_total{model}`.
    pub generated_tokens: IntCounterVec,
    /// `anneal_serve_time_to_first_token_seconds{model}`: from the request's arrival.
    pub time_to_first_token: HistogramVec,
    /// `anneal_serve_tokens_per_second{model}`: one request's decoding speed after its first token.
    pub tokens_per_second: HistogramVec,
    /// `anneal_serve_request_duration_seconds{model}`.
    pub request_duration: HistogramVec,
    /// `anneal_serve_requests_running`: requests the engine is stepping.
    pub running: IntGauge,
    /// `anneal_serve_requests_in_flight`: running plus waiting.
    pub in_flight: IntGauge,
    /// `anneal_serve_engine_steps_total`: model steps run (prompts and tokens).
    pub engine_steps: IntCounter,
    /// `anneal_serve_decode_batch_size`: requests in each decoding step.
    pub decode_batch: Histogram,
    /// `anneal_serve_kv_cache_bytes`: what the engine's KV cache buffers take.
    pub kv_cache_bytes: IntGauge,
    /// `anneal_serve_generated_images_total{model}`: images an image model made.
    pub generated_images: IntCounterVec,
}

impl ServeMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let model = &["model"];
        let seconds = vec![
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ];
        let metrics = Self {
            requests: IntCounterVec::new(
                Opts::new(
                    "anneal_serve_requests_total",
                    "Chat completion and image generation requests, by model and outcome",
                ),
                &["model", "outcome"],
            )
            .unwrap(),
            prompt_tokens: IntCounterVec::new(
                Opts::new(
                    "anneal_serve_prompt_tokens_total",
                    "Prompt tokens of served requests",
                ),
                model,
            )
            .unwrap(),
            generated_tokens: IntCounterVec::new(
                Opts::new("anneal_serve_generated_tokens_total", "Tokens generated"),
                model,
            )
            .unwrap(),
            time_to_first_token: HistogramVec::new(
                HistogramOpts::new(
                    "anneal_serve_time_to_first_token_seconds",
                    "Time from a request's arrival to its first generated token",
                )
                .buckets(seconds.clone()),
                model,
            )
            .unwrap(),
            tokens_per_second: HistogramVec::new(
                HistogramOpts::new(
                    "anneal_serve_tokens_per_second",
                    "Decoding speed of one request after its first token",
                )
                .buckets(vec![
                    1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0,
                ]),
                model,
            )
            .unwrap(),
            request_duration: HistogramVec::new(
                HistogramOpts::new(
                    "anneal_serve_request_duration_seconds",
                    "Time a request took",
                )
                .buckets(seconds),
                model,
            )
            .unwrap(),
            running: IntGauge::new("anneal_serve_requests_running", "Requests being generated")
                .unwrap(),
            in_flight: IntGauge::new(
                "anneal_serve_requests_in_flight",
                "Requests running or waiting for their turn",
            )
            .unwrap(),
            engine_steps: IntCounter::new(
                "anneal_serve_engine_steps_total",
                "Model steps the engine ran: a prompt or one token each",
            )
            .unwrap(),
            decode_batch: Histogram::with_opts(
                HistogramOpts::new(
                    "anneal_serve_decode_batch_size",
                    "Requests sharing one decoding step",
                )
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]),
            )
            .unwrap(),
            kv_cache_bytes: IntGauge::new(
                "anneal_serve_kv_cache_bytes",
                "Bytes the KV cache's preallocated buffers take",
            )
            .unwrap(),
            generated_images: IntCounterVec::new(
                Opts::new("anneal_serve_generated_images_total", "Images generated"),
                model,
            )
            .unwrap(),
            registry,
        };
        let r = &metrics.registry;
        r.register(Box::new(metrics.requests.clone())).unwrap();
        r.register(Box::new(metrics.prompt_tokens.clone())).unwrap();
        r.register(Box::new(metrics.generated_tokens.clone()))
            .unwrap();
        r.register(Box::new(metrics.time_to_first_token.clone()))
            .unwrap();
        r.register(Box::new(metrics.tokens_per_second.clone()))
            .unwrap();
        r.register(Box::new(metrics.request_duration.clone()))
            .unwrap();
        r.register(Box::new(metrics.running.clone())).unwrap();
        r.register(Box::new(metrics.in_flight.clone())).unwrap();
        r.register(Box::new(metrics.engine_steps.clone())).unwrap();
        r.register(Box::new(metrics.decode_batch.clone())).unwrap();
        r.register(Box::new(metrics.kv_cache_bytes.clone()))
            .unwrap();
        r.register(Box::new(metrics.generated_images.clone()))
            .unwrap();
        metrics
    }

    /// The Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("metrics encode");
        String::from_utf8(out).expect("metrics are UTF-8")
    }
}

impl Default for ServeMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl EngineGauges for ServeMetrics {
    fn set_running(&self, running: usize) {
        self.running.set(running as i64);
    }

    fn count_step(&self) {
        self.engine_steps.inc();
    }

    fn observe_batch(&self, rows: usize) {
        self.decode_batch.observe(rows as f64);
    }

    fn set_cache_bytes(&self, bytes: usize) {
        self.kv_cache_bytes.set(bytes as i64);
    }
}
