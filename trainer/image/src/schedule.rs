//! The flow-matching Euler sampler's noise levels, as diffusers'
//! `FlowMatchEulerDiscreteScheduler` sets them for FluxPipeline: `steps` sigmas evenly
//! from 1 down to `1/steps`, bent towards noise by the resolution-dependent shift
//! (FLUX.1-dev: more tokens, more steps spent at high noise) or by a fixed shift
//! (schnell: none), then 0. A step moves the latents by `(σ_next − σ)·velocity`.
//! The arithmetic is f32 where diffusers' is, so the sigmas are equal to the bit.

use std::path::Path;

use serde::Deserialize;

/// `scheduler/scheduler_config.json` (FLUX.1-dev's values as defaults).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct SchedulerConfig {
    #[serde(default = "defaults::train_timesteps")]
    pub num_train_timesteps: usize,
    #[serde(default = "defaults::shift")]
    pub shift: f64,
    #[serde(default)]
    pub use_dynamic_shifting: bool,
    #[serde(default = "defaults::base_shift")]
    pub base_shift: f64,
    #[serde(default = "defaults::max_shift")]
    pub max_shift: f64,
    #[serde(default = "defaults::base_seq")]
    pub base_image_seq_len: usize,
    #[serde(default = "defaults::max_seq")]
    pub max_image_seq_len: usize,
}

mod defaults {
    pub fn train_timesteps() -> usize {
        1000
    }
    pub fn shift() -> f64 {
        1.0
    }
    pub fn base_shift() -> f64 {
        0.5
    }
    pub fn max_shift() -> f64 {
        1.15
    }
    pub fn base_seq() -> usize {
        256
    }
    pub fn max_seq() -> usize {
        4096
    }
}

/// Why a scheduler config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("{path}: {message}")]
    Config { path: String, message: String },
    #[error("steps must be at least 1")]
    NoSteps,
}

impl SchedulerConfig {
    pub fn read(dir: &Path) -> Result<Self, ScheduleError> {
        let path = dir.join("scheduler_config.json");
        let err = |message: String| ScheduleError::Config {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| err(e.to_string()))?;
        let config: Self = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        if config.shift <= 0.0 || config.max_image_seq_len <= config.base_image_seq_len {
            return Err(err(
                "shift must be positive and max_image_seq_len above base_image_seq_len".into(),
            ));
        }
        Ok(config)
    }

    /// FluxPipeline's `calculate_shift`: `mu` grows linearly with the image's tokens,
    /// from `base_shift` at `base_image_seq_len` to `max_shift` at `max_image_seq_len`.
    pub fn mu(&self, image_seq_len: usize) -> f64 {
        let m = (self.max_shift - self.base_shift)
            / (self.max_image_seq_len - self.base_image_seq_len) as f64;
        let b = self.base_shift - m * self.base_image_seq_len as f64;
        image_seq_len as f64 * m + b
    }

    /// The `steps + 1` noise levels of a generation of `image_seq_len` tokens, the
    /// last 0.
    pub fn sigmas(&self, steps: usize, image_seq_len: usize) -> Result<Vec<f32>, ScheduleError> {
        if steps == 0 {
            return Err(ScheduleError::NoSteps);
        }
        // np.linspace(1.0, 1/steps, steps) in f64 (`i·step + start`, the last value
        // exactly `stop`), then to f32.
        let last = 1.0 / steps as f64;
        let step = (last - 1.0) / (steps.max(2) - 1) as f64;
        let even = (0..steps).map(|i| {
            let value = if i + 1 == steps && steps > 1 {
                last
            } else {
                i as f64 * step + 1.0
            };
            value as f32
        });
        let mut sigmas: Vec<f32> = if self.use_dynamic_shifting {
            let e = self.mu(image_seq_len).exp() as f32;
            even.map(|t| e / (e + (1.0 / t - 1.0))).collect()
        } else {
            let shift = self.shift as f32;
            even.map(|s| shift * s / (1.0 + (shift - 1.0) * s))
                .collect()
        };
        sigmas.push(0.0);
        Ok(sigmas)
    }

    /// The timestep the transformer is given at noise level `sigma`: FluxPipeline passes
    /// `(σ·1000)/1000`, which is σ to within an ulp.
    pub fn model_timestep(&self, sigma: f32) -> f32 {
        let train = self.num_train_timesteps as f32;
        (sigma * train) / 1000.0
    }
}
