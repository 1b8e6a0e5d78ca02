//! Training hyperparameters: what a user may write, the presets, and the one
//! place where presets and defaults turn into the values the trainer uses.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::finetunejob::Task;
use crate::limits::{
    BATCH_SIZE, DPO_BETA_MAX, DPO_LABEL_SMOOTHING_MAX, DPO_SFT_WEIGHT_MAX, EPOCHS,
    GRADIENT_ACCUMULATION, LEARNING_RATE_MAX, LORA_ALPHA, LORA_DROPOUT_MAX, LORA_RANK, MAX_TOKENS,
    REPEATS, RESOLUTION, TRIGGER_WORD_MAX, WARMUP_RATIO_MAX, WEIGHT_DECAY_MAX,
};

/// A named starting point for the hyperparameters; any field set beside it wins.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    #[default]
    Standard,
    Quality,
    Fast,
}

/// Linear layers a LoRA adapter can be attached to (Hugging Face module names).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetModule {
    QProj,
    KProj,
    VProj,
    OProj,
    GateProj,
    UpProj,
    DownProj,
}

impl TargetModule {
    /// Every attention and MLP projection: the default, as the hosted platforms do.
    pub const ALL: [TargetModule; 7] = [
        TargetModule::QProj,
        TargetModule::KProj,
        TargetModule::VProj,
        TargetModule::OProj,
        TargetModule::GateProj,
        TargetModule::UpProj,
        TargetModule::DownProj,
    ];

    /// The module's name in Hugging Face checkpoints and PEFT configs.
    pub fn hf_name(self) -> &'static str {
        match self {
            TargetModule::QProj => "q_proj",
            TargetModule::KProj => "k_proj",
            TargetModule::VProj => "v_proj",
            TargetModule::OProj => "o_proj",
            TargetModule::GateProj => "gate_proj",
            TargetModule::UpProj => "up_proj",
            TargetModule::DownProj => "down_proj",
        }
    }
}

// No field but `preset` carries a schema default, on purpose: an apiserver-filled
// default would be indistinguishable from a user's override and would mask the preset.
/// Training hyperparameters. Every field is optional: unset fields come from the preset.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct HyperparametersSpec {
    #[serde(default)]
    pub preset: Preset,
    /// Peak learning rate, 0 < x <= 0.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = LEARNING_RATE_MAX), extend("exclusiveMinimum" = true))]
    pub learning_rate: Option<f64>,
    /// Passes over the training set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = EPOCHS.0, max = EPOCHS.1))]
    pub epochs: Option<u32>,
    /// Samples per optimizer step (across gradient-accumulation micro-batches): what
    /// the loss, the learning-rate schedule and the order of the samples follow,
    /// whatever micro-batch the device runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = BATCH_SIZE.0, max = BATCH_SIZE.1))]
    pub batch_size: Option<u32>,
    /// Samples with more tokens than this are dropped and counted, never truncated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = MAX_TOKENS.0, max = MAX_TOKENS.1))]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraSpec>,
    /// Fraction of the steps spent warming the learning rate up linearly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = WARMUP_RATIO_MAX))]
    pub warmup_ratio: Option<f64>,
    /// AdamW decoupled weight decay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = WEIGHT_DECAY_MAX))]
    pub weight_decay: Option<f64>,
    /// Micro-batches per optimizer step; must divide `batchSize`. Unset (the
    /// default), the trainer runs the largest micro-batch its device holds (the memory
    /// plan) and accumulates up to `batchSize`; set, each micro-batch has
    /// `batchSize / gradientAccumulation` samples on any device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = GRADIENT_ACCUMULATION.0, max = GRADIENT_ACCUMULATION.1))]
    pub gradient_accumulation: Option<u32>,
    /// Seed for initialisation, data order, validation split and dropout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// DPO settings; only with `method: dpo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpo: Option<DpoSpec>,
    /// Gradient checkpointing (activation recomputation), default true for every
    /// preset: the forward pass keeps only each decoder layer's input, and the
    /// backward pass runs each layer again to get its activations, one layer at a
    /// time. It costs about 30% more compute per step (a second forward pass) and
    /// saves most of the activation memory: instead of every layer's attention
    /// scores and MLP activations, one layer's are alive at a time, which is what
    /// lets long `maxTokens` and larger micro-batches fit a GPU. Losses and
    /// gradients are the same either way up to rounding; with LoRA dropout the masks
    /// are drawn per layer, so a run keeps one setting across resumes. `false`
    /// trades that memory for speed on small models and short sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gradient_checkpointing: Option<bool>,
    /// Image jobs: a word for the subject, put before every caption (and alone where
    /// an image has none), so that prompts with it bring the subject back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = TRIGGER_WORD_MAX))]
    pub trigger_word: Option<String>,
    /// Image jobs: how many times each image is seen per epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = REPEATS.0, max = REPEATS.1))]
    pub repeats: Option<u32>,
    /// Image jobs: the long side of the training buckets in pixels (a multiple of
    /// 64): each image is resized and centre-cropped to the nearest of square,
    /// 4:3 and 3:4 (1024 gives 1024x1024, 1024x768 and 768x1024). Default: the
    /// model's image size (1024 for FLUX.1-dev), rounded up to a multiple of 64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = RESOLUTION.0, max = RESOLUTION.1), extend("multipleOf" = 64))]
    pub resolution: Option<u32>,
}

/// LoRA adapter shape.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoraSpec {
    /// Rank of the low-rank update: its capacity and size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = LORA_RANK.0, max = LORA_RANK.1))]
    pub rank: Option<u32>,
    /// Scale numerator: the update is multiplied by `alpha / rank`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = LORA_ALPHA.0, max = LORA_ALPHA.1))]
    pub alpha: Option<u32>,
    /// Dropout on the adapter's input during training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = LORA_DROPOUT_MAX))]
    pub dropout: Option<f64>,
    /// Modules to adapt; default all attention and MLP projections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 7))]
    pub target_modules: Option<Vec<TargetModule>>,
    /// Scale by `alpha / sqrt(rank)` (rsLoRA) instead of `alpha / rank`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_rslora: Option<bool>,
    /// Image jobs: also adapt the transformer blocks' feed-forward projections
    /// (default: attention only, as diffusers' FLUX LoRA script does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_mlp: Option<bool>,
}

/// DPO settings; only with `method: dpo`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DpoSpec {
    /// Strength of the pull towards the reference model, 0 < beta <= 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = DPO_BETA_MAX), extend("exclusiveMinimum" = true))]
    pub beta: Option<f64>,
    /// Conservative DPO: the assumed probability that a preference label is flipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = DPO_LABEL_SMOOTHING_MAX))]
    pub label_smoothing: Option<f64>,
    /// RPO: the weight of an SFT term, the chosen reply's negative log-likelihood
    /// (mean per token), added to the DPO loss, 0 <= sftWeight <= 10; 0 (default) is
    /// plain DPO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = DPO_SFT_WEIGHT_MAX))]
    pub sft_weight: Option<f64>,
}

/// The values training runs with, every one decided.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedHyperparameters {
    pub learning_rate: f64,
    pub epochs: u32,
    pub batch_size: u32,
    pub max_tokens: u32,
    pub lora_rank: u32,
    pub lora_alpha: u32,
    pub lora_dropout: f64,
    pub target_modules: Vec<TargetModule>,
    pub use_rslora: bool,
    pub warmup_ratio: f64,
    pub weight_decay: f64,
    /// The job's `gradientAccumulation`, 1 when unset: the micro-batch itself is the
    /// trainer's choice ([`HyperparametersSpec::set_micro_batch`]).
    pub gradient_accumulation: u32,
    pub seed: u64,
    pub dpo_beta: f64,
    pub dpo_label_smoothing: f64,
    #[serde(default)]
    pub dpo_sft_weight: f64,
    /// States written before the field existed read as the default (on), so their
    /// runs resume under a job that leaves it unset.
    #[serde(default = "default_gradient_checkpointing")]
    pub gradient_checkpointing: bool,
    /// Image jobs only, as the rest below.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_word: Option<String>,
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub repeats: u32,
    /// `None`: the model's image size (decided when the model is loaded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<u32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lora_include_mlp: bool,
}

fn one() -> u32 {
    1
}

fn is_one(value: &u32) -> bool {
    *value == 1
}

fn default_gradient_checkpointing() -> bool {
    DEFAULT_GRADIENT_CHECKPOINTING
}

impl ResolvedHyperparameters {
    /// The LoRA output scale of these hyperparameters.
    pub fn lora_scale(&self) -> f64 {
        lora_scale(
            f64::from(self.lora_alpha),
            self.lora_rank as usize,
            self.use_rslora,
        )
    }
}

/// The LoRA output scale: `alpha / rank`, or `alpha / sqrt(rank)` with rsLoRA. The
/// trainer, PEFT adapter loading and the API all use this one definition.
pub fn lora_scale(alpha: f64, rank: usize, use_rslora: bool) -> f64 {
    let rank = rank as f64;
    if use_rslora {
        alpha / rank.sqrt()
    } else {
        alpha / rank
    }
}

/// One row of the presets table in docs/design.md (or, for image jobs,
/// docs/images.md).
struct PresetRow {
    learning_rate: f64,
    epochs: u32,
    batch_size: u32,
    rank: u32,
    alpha: u32,
    dropout: f64,
    repeats: u32,
}

impl Preset {
    fn row_for(self, task: Task) -> PresetRow {
        match task {
            Task::Chat => self.row(),
            Task::TextToImage => self.image_row(),
        }
    }

    /// Image LoRA: one image a step, rank = alpha, no dropout, each image seen
    /// `repeats` times an epoch, as the FLUX LoRA trainers in use default to.
    fn image_row(self) -> PresetRow {
        match self {
            Preset::Standard => PresetRow {
                learning_rate: 1e-4,
                epochs: 8,
                batch_size: 1,
                rank: 16,
                alpha: 16,
                dropout: 0.0,
                repeats: 10,
            },
            Preset::Quality => PresetRow {
                learning_rate: 1e-4,
                epochs: 10,
                batch_size: 1,
                rank: 32,
                alpha: 32,
                dropout: 0.0,
                repeats: 15,
            },
            Preset::Fast => PresetRow {
                learning_rate: 2e-4,
                epochs: 4,
                batch_size: 1,
                rank: 8,
                alpha: 8,
                dropout: 0.0,
                repeats: 10,
            },
        }
    }

    fn row(self) -> PresetRow {
        match self {
            Preset::Standard => PresetRow {
                learning_rate: 1e-4,
                epochs: 3,
                batch_size: 8,
                rank: 8,
                alpha: 32,
                dropout: 0.05,
                repeats: 1,
            },
            Preset::Quality => PresetRow {
                learning_rate: 1e-4,
                epochs: 5,
                batch_size: 16,
                rank: 16,
                alpha: 64,
                dropout: 0.1,
                repeats: 1,
            },
            Preset::Fast => PresetRow {
                learning_rate: 1e-4,
                epochs: 2,
                batch_size: 8,
                rank: 4,
                alpha: 16,
                dropout: 0.05,
                repeats: 1,
            },
        }
    }
}

/// Defaults that no preset varies.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;
pub const DEFAULT_WARMUP_RATIO: f64 = 0.03;
pub const DEFAULT_WEIGHT_DECAY: f64 = 0.0;
pub const DEFAULT_SEED: u64 = 42;
pub const DEFAULT_DPO_BETA: f64 = 0.1;
/// Per-layer recomputation is on unless a job turns it off: at the lengths users
/// train with, activations, not weights, are what stops a job fitting a GPU.
pub const DEFAULT_GRADIENT_CHECKPOINTING: bool = true;

/// The CEL rule that `gradientAccumulation` divides the effective batch size; the
/// presets' batch sizes are written into it from the table above, so the rule and
/// [`HyperparametersSpec::resolve`] cannot disagree.
pub fn gradient_accumulation_divides_batch_rule() -> String {
    let preset_batches = |task: Task| {
        let rows: Vec<String> = [Preset::Standard, Preset::Quality, Preset::Fast]
            .into_iter()
            .map(|preset| {
                let name = serde_json::to_value(preset).expect("presets serialize");
                format!("{name}: {}", preset.row_for(task).batch_size).replace('"', "'")
            })
            .collect();
        format!("{{{}}}", rows.join(", "))
    };
    format!(
        "!has(self.hyperparameters.gradientAccumulation) || (has(self.hyperparameters.batchSize) ? self.hyperparameters.batchSize : (self.task == 'text-to-image' ? {} : {})[self.hyperparameters.preset]) % self.hyperparameters.gradientAccumulation == 0",
        preset_batches(Task::TextToImage),
        preset_batches(Task::Chat),
    )
}

impl HyperparametersSpec {
    /// The micro-batch the job sets itself, `batchSize / gradientAccumulation`, when it
    /// sets `gradientAccumulation` (an explicit choice wins); `None` leaves it to the
    /// memory plan for the device the trainer runs on.
    pub fn set_micro_batch(&self) -> Option<u32> {
        let accumulation = self.gradient_accumulation?.max(1);
        Some(self.resolve().batch_size / accumulation)
    }

    /// A chat job's hyperparameters: [`Self::resolve_for`] `Task::Chat`.
    pub fn resolve(&self) -> ResolvedHyperparameters {
        self.resolve_for(Task::Chat)
    }

    /// The preset's row for `task`, overridden field by field by what the user wrote.
    pub fn resolve_for(&self, task: Task) -> ResolvedHyperparameters {
        let row = self.preset.row_for(task);
        let lora = self.lora.clone().unwrap_or_default();
        let dpo = self.dpo.clone().unwrap_or_default();
        ResolvedHyperparameters {
            learning_rate: self.learning_rate.unwrap_or(row.learning_rate),
            epochs: self.epochs.unwrap_or(row.epochs),
            batch_size: self.batch_size.unwrap_or(row.batch_size),
            max_tokens: self.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            lora_rank: lora.rank.unwrap_or(row.rank),
            lora_alpha: lora.alpha.unwrap_or(row.alpha),
            lora_dropout: lora.dropout.unwrap_or(row.dropout),
            target_modules: lora
                .target_modules
                .unwrap_or_else(|| TargetModule::ALL.to_vec()),
            use_rslora: lora.use_rslora.unwrap_or(false),
            warmup_ratio: self.warmup_ratio.unwrap_or(DEFAULT_WARMUP_RATIO),
            weight_decay: self.weight_decay.unwrap_or(DEFAULT_WEIGHT_DECAY),
            gradient_accumulation: self.gradient_accumulation.unwrap_or(1),
            seed: self.seed.unwrap_or(DEFAULT_SEED),
            dpo_beta: dpo.beta.unwrap_or(DEFAULT_DPO_BETA),
            dpo_label_smoothing: dpo.label_smoothing.unwrap_or(0.0),
            dpo_sft_weight: dpo.sft_weight.unwrap_or(0.0),
            gradient_checkpointing: self
                .gradient_checkpointing
                .unwrap_or(DEFAULT_GRADIENT_CHECKPOINTING),
            trigger_word: self.trigger_word.clone(),
            repeats: self.repeats.unwrap_or(row.repeats),
            resolution: self.resolution,
            lora_include_mlp: lora.include_mlp.unwrap_or(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_follow_the_design_table() {
        let cases = [
            (Preset::Standard, 1e-4, 3, 8, 8, 32, 0.05),
            (Preset::Quality, 1e-4, 5, 16, 16, 64, 0.1),
            (Preset::Fast, 1e-4, 2, 8, 4, 16, 0.05),
        ];
        for (preset, lr, epochs, batch, rank, alpha, dropout) in cases {
            let r = HyperparametersSpec {
                preset,
                ..Default::default()
            }
            .resolve();
            assert_eq!(
                (r.learning_rate, r.epochs, r.batch_size),
                (lr, epochs, batch),
                "{preset:?}"
            );
            assert_eq!(
                (r.lora_rank, r.lora_alpha, r.lora_dropout),
                (rank, alpha, dropout),
                "{preset:?}"
            );
            assert_eq!(r.target_modules, TargetModule::ALL.to_vec());
            assert_eq!(
                (r.max_tokens, r.seed, r.gradient_accumulation),
                (4096, 42, 1)
            );
            assert!(r.gradient_checkpointing, "{preset:?}");
        }
    }

    #[test]
    fn gradient_checkpointing_turns_off_and_old_states_read_it_as_on() {
        let spec: HyperparametersSpec = serde_json::from_value(serde_json::json!({
            "preset": "fast",
            "gradientCheckpointing": false,
        }))
        .unwrap();
        assert!(!spec.resolve().gradient_checkpointing);

        // A trainer_state.json echo written before the field existed.
        let mut old = serde_json::to_value(HyperparametersSpec::default().resolve()).unwrap();
        old.as_object_mut()
            .unwrap()
            .remove("gradientCheckpointing")
            .expect("the field is written");
        let read: ResolvedHyperparameters = serde_json::from_value(old).unwrap();
        assert_eq!(read, HyperparametersSpec::default().resolve());
    }

    #[test]
    fn a_field_beside_the_preset_wins() {
        let spec: HyperparametersSpec = serde_json::from_value(serde_json::json!({
            "preset": "quality",
            "epochs": 1,
            "lora": {"rank": 2, "targetModules": ["q_proj", "v_proj"], "useRslora": true},
            "gradientAccumulation": 4,
        }))
        .unwrap();
        let r = spec.resolve();
        assert_eq!(r.epochs, 1);
        assert_eq!(r.batch_size, 16, "unset fields still come from the preset");
        assert_eq!(r.lora_rank, 2);
        assert_eq!(r.lora_alpha, 64);
        assert_eq!(
            r.target_modules,
            vec![TargetModule::QProj, TargetModule::VProj]
        );
        assert_eq!(spec.set_micro_batch(), Some(4));
        let unset = HyperparametersSpec {
            gradient_accumulation: None,
            ..spec
        };
        assert_eq!(unset.set_micro_batch(), None, "the plan's, on the device");
        assert_eq!(r.lora_scale(), 64.0 / 2f64.sqrt());
    }

    #[test]
    fn dpo_settings_resolve_with_their_defaults() {
        let plain = HyperparametersSpec::default().resolve();
        assert_eq!(
            (
                plain.dpo_beta,
                plain.dpo_label_smoothing,
                plain.dpo_sft_weight
            ),
            (0.1, 0.0, 0.0)
        );
        let spec: HyperparametersSpec = serde_json::from_value(serde_json::json!({
            "dpo": {"beta": 0.05, "sftWeight": 1.5},
        }))
        .unwrap();
        let r = spec.resolve();
        assert_eq!(
            (r.dpo_beta, r.dpo_label_smoothing, r.dpo_sft_weight),
            (0.05, 0.0, 1.5)
        );
    }
}
