//! Fields that belong to one task only: an image job (`task: text-to-image`) has a
//! folder of images, a trigger word, repeats, a resolution and image prompts; a chat
//! job has JSONL data, maxTokens, DPO settings and conversations. Each field set on
//! the wrong kind of job is an error naming it, rather than a setting silently
//! ignored.

use super::FieldErrors;
use crate::finetunejob::{FineTuneJobSpec, Task, TrainingMethod, TrainingType};
use crate::limits::{
    PROMPT_CONTENT_MAX, REPEATS, RESOLUTION, RESOLUTION_STEP, SAMPLE_GUIDANCE_MAX, SAMPLE_STEPS,
    TRIGGER_WORD_MAX,
};

pub(super) fn check_task_fields(e: &mut FieldErrors, spec: &FineTuneJobSpec) {
    match spec.task {
        Task::Chat => check_chat_job(e, spec),
        Task::TextToImage => check_image_job(e, spec),
    }
}

/// Image-job fields on a chat job.
fn check_chat_job(e: &mut FieldErrors, spec: &FineTuneJobSpec) {
    let h = &spec.hyperparameters;
    let image_only = "only an image job (task: text-to-image) has it";
    if spec.dataset.images.is_some() {
        e.push("spec.dataset.images", image_only);
    }
    if h.trigger_word.is_some() {
        e.push("spec.hyperparameters.triggerWord", image_only);
    }
    if h.repeats.is_some() {
        e.push("spec.hyperparameters.repeats", image_only);
    }
    if h.resolution.is_some() {
        e.push("spec.hyperparameters.resolution", image_only);
    }
    if h.lora.as_ref().is_some_and(|l| l.include_mlp.is_some()) {
        e.push(
            "spec.hyperparameters.lora.includeMlp",
            "only an image job (task: text-to-image) has it; a chat job names its projections in lora.targetModules",
        );
    }
    for (i, prompt) in spec.checkpoints.sample_prompts.iter().enumerate() {
        let path = format!("spec.checkpoints.samplePrompts[{i}]");
        if prompt.prompt.is_some() {
            e.push(
                format!("{path}.prompt"),
                "a chat job's sample prompt is a conversation: set messages",
            );
        }
        for (field, set) in [
            ("seed", prompt.seed.is_some()),
            ("steps", prompt.steps.is_some()),
            ("guidance", prompt.guidance.is_some()),
        ] {
            if set {
                e.push(format!("{path}.{field}"), image_only);
            }
        }
    }
}

/// What an image job must have and must not: LoRA with the flow-matching loss on a
/// folder of images, image prompts, and none of a chat job's fields.
fn check_image_job(e: &mut FieldErrors, spec: &FineTuneJobSpec) {
    let h = &spec.hyperparameters;
    if spec.method != TrainingMethod::Sft {
        e.push(
            "spec.method",
            "an image job (task: text-to-image) trains with the flow-matching loss: leave method unset",
        );
    }
    if spec.training != TrainingType::Lora {
        e.push(
            "spec.training",
            "an image job (task: text-to-image) trains a LoRA adapter: leave training unset",
        );
    }
    if spec.resources.gpus > 1 {
        e.push(
            "spec.resources.gpus",
            format!(
                "an image job (task: text-to-image) trains on one GPU, got {}: several GPUs are for chat jobs (data-parallel, or the model's layers placed across them)",
                spec.resources.gpus
            ),
        );
    }
    let dataset = &spec.dataset;
    if dataset.images.is_none() {
        e.push(
            "spec.dataset.images",
            "required by task: text-to-image (a folder of images with .txt captions)",
        );
    }
    let chat_only = "a chat job's field: an image job (task: text-to-image) has no JSONL data";
    for (path, set) in [
        ("spec.dataset.train", dataset.train.is_some()),
        ("spec.dataset.configMap", dataset.config_map.is_some()),
        ("spec.dataset.validation", dataset.validation.is_some()),
        (
            "spec.dataset.validationSplit",
            dataset.validation_split.is_some(),
        ),
        ("spec.dataset.mix", !dataset.mix.is_empty()),
        ("spec.dataset.packing", dataset.packing.is_some()),
    ] {
        if set {
            e.push(path, chat_only);
        }
    }
    if h.max_tokens.is_some() {
        e.push(
            "spec.hyperparameters.maxTokens",
            "a chat job's field: an image job's captions are cut at the text encoder's 512 tokens, with a warning naming the file",
        );
    }
    if h.lora.as_ref().is_some_and(|l| l.target_modules.is_some()) {
        e.push(
            "spec.hyperparameters.lora.targetModules",
            "names a chat model's projections: an image job adapts the transformer's attention, and with lora.includeMlp its feed-forward projections",
        );
    }
    if let Some(word) = &h.trigger_word {
        let path = "spec.hyperparameters.triggerWord";
        e.length(path, word, TRIGGER_WORD_MAX);
        if word.trim() != word || word.chars().any(char::is_control) {
            e.push(
                path,
                format!("must be one line without leading or trailing spaces, got {word:?}"),
            );
        }
    }
    e.range("spec.hyperparameters.repeats", h.repeats, REPEATS);
    if let Some(resolution) = h.resolution {
        let (min, max) = RESOLUTION;
        if !(min..=max).contains(&resolution) || !resolution.is_multiple_of(RESOLUTION_STEP) {
            e.push(
                "spec.hyperparameters.resolution",
                format!(
                    "must be a multiple of {RESOLUTION_STEP} between {min} and {max}, got {resolution}"
                ),
            );
        }
    }
    if spec.checkpoints.evaluation.is_some() {
        e.push(
            "spec.checkpoints.evaluation",
            "only a chat job answers held-out chats; an image job's checkpoints draw samplePrompts",
        );
    }
    check_image_prompts(e, spec);
}

fn check_image_prompts(e: &mut FieldErrors, spec: &FineTuneJobSpec) {
    for (i, prompt) in spec.checkpoints.sample_prompts.iter().enumerate() {
        let path = format!("spec.checkpoints.samplePrompts[{i}]");
        if !prompt.messages.is_empty() {
            e.push(
                format!("{path}.messages"),
                "an image job's sample prompt is text: set prompt",
            );
        }
        match &prompt.prompt {
            Some(text) => e.length(&format!("{path}.prompt"), text, PROMPT_CONTENT_MAX),
            None if prompt.messages.is_empty() => {
                e.push(format!("{path}.prompt"), "required in an image job")
            }
            None => {}
        }
        e.range(&format!("{path}.steps"), prompt.steps, SAMPLE_STEPS);
        e.at_most(
            &format!("{path}.guidance"),
            prompt.guidance,
            SAMPLE_GUIDANCE_MAX,
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::manifest::{ManifestError, parse_finetunejob};

    /// What parsing (which validates) says of `yaml`: each error as `path: message`.
    fn problems(yaml: &str) -> Vec<String> {
        match parse_finetunejob(yaml) {
            Ok(_) => Vec::new(),
            Err(ManifestError::Invalid(errors)) => {
                errors.0.iter().map(ToString::to_string).collect()
            }
            Err(other) => panic!("{other}"),
        }
    }

    /// The errors of an image job whose spec ends with `extra` (YAML under `spec:`).
    fn errors(extra: &str) -> Vec<String> {
        let yaml = format!(
            "apiVersion: anneal.dev/v1alpha1
kind: FineTuneJob
metadata: {{name: dog}}
spec:
  task: text-to-image
  baseModel: {{name: anneal-flux-tiny, source: file://models/anneal-flux-tiny}}
{extra}"
        );
        problems(&yaml)
    }

    #[test]
    fn an_image_job_with_its_own_fields_is_valid() {
        let found = errors(
            "  dataset: {images: file://dog-photos/}
  hyperparameters:
    preset: fast
    triggerWord: sks dog
    repeats: 20
    resolution: 512
    lora: {rank: 4, includeMlp: true}
  checkpoints:
    samplePrompts:
      - prompt: a photo of sks dog on a beach
        seed: 7
        steps: 20
        guidance: 3.5
",
        );
        assert_eq!(found, Vec::<String>::new());
    }

    #[test]
    fn a_chat_field_on_an_image_job_names_the_field() {
        let cases = [
            (
                "  method: dpo\n  dataset: {images: file://d/}\n",
                "spec.method: an image job (task: text-to-image) trains with the flow-matching loss: leave method unset",
            ),
            (
                "  training: full\n  dataset: {images: file://d/}\n",
                "spec.training: an image job (task: text-to-image) trains a LoRA adapter: leave training unset",
            ),
            (
                "  dataset: {images: file://d/}\n  resources: {gpus: 2}\n",
                "spec.resources.gpus: an image job (task: text-to-image) trains on one GPU, got 2: several GPUs are for chat jobs (data-parallel, or the model's layers placed across them)",
            ),
            (
                "  dataset: {images: file://d/, validationSplit: 0.2}\n",
                "spec.dataset.validationSplit: a chat job's field: an image job (task: text-to-image) has no JSONL data",
            ),
            (
                "  dataset: {train: file://d.jsonl}\n",
                "spec.dataset.images: required by task: text-to-image (a folder of images with .txt captions)",
            ),
            (
                "  dataset: {images: file://d/}\n  hyperparameters: {maxTokens: 77}\n",
                "spec.hyperparameters.maxTokens: a chat job's field: an image job's captions are cut at the text encoder's 512 tokens, with a warning naming the file",
            ),
            (
                "  dataset: {images: file://d/}\n  hyperparameters: {lora: {targetModules: [q_proj]}}\n",
                "spec.hyperparameters.lora.targetModules: names a chat model's projections: an image job adapts the transformer's attention, and with lora.includeMlp its feed-forward projections",
            ),
            (
                "  dataset: {images: file://d/}\n  hyperparameters: {resolution: 1000}\n",
                "spec.hyperparameters.resolution: must be a multiple of 64 between 64 and 2048, got 1000",
            ),
            (
                "  dataset: {images: file://d/}\n  hyperparameters: {repeats: 0}\n",
                "spec.hyperparameters.repeats: must be between 1 and 100, got 0",
            ),
            (
                "  dataset: {images: file://d/}\n  hyperparameters: {triggerWord: \" sks\"}\n",
                "spec.hyperparameters.triggerWord: must be one line without leading or trailing spaces, got \" sks\"",
            ),
            (
                "  dataset: {images: file://d/}\n  checkpoints: {samplePrompts: [{messages: [{role: user, content: hi}]}]}\n",
                "spec.checkpoints.samplePrompts[0].messages: an image job's sample prompt is text: set prompt",
            ),
            (
                "  dataset: {images: file://d/}\n  checkpoints: {samplePrompts: [{prompt: a dog, steps: 0}]}\n",
                "spec.checkpoints.samplePrompts[0].steps: must be between 1 and 100, got 0",
            ),
            (
                "  dataset: {images: file://d/}\n  checkpoints: {earlyStopping: {patience: 2}}\n",
                "spec.checkpoints.earlyStopping: an image job has no validation data to judge by: choose among the epochs' samples instead",
            ),
        ];
        for (extra, expected) in cases {
            let found = errors(extra);
            assert!(
                found.iter().any(|e| e == expected),
                "{extra}: expected {expected:?}, got {found:#?}"
            );
        }
    }

    #[test]
    fn an_image_field_on_a_chat_job_names_the_field() {
        let yaml = "apiVersion: anneal.dev/v1alpha1
kind: FineTuneJob
metadata: {name: chat}
spec:
  baseModel: {name: anneal-tiny, source: file://models/anneal-tiny}
  dataset: {train: file://d.jsonl, images: file://d/}
  hyperparameters: {triggerWord: sks, repeats: 3, resolution: 512, lora: {includeMlp: true}}
  checkpoints: {samplePrompts: [{prompt: a dog, seed: 1}]}
";
        let found = problems(yaml);
        assert!(
            !found
                .iter()
                .any(|p| p.contains("must hold 1 to 16 messages")),
            "an image prompt on a chat job is one error, not two: {found:?}"
        );
        for path in [
            "spec.dataset",
            "spec.dataset.images",
            "spec.hyperparameters.triggerWord",
            "spec.hyperparameters.repeats",
            "spec.hyperparameters.resolution",
            "spec.hyperparameters.lora.includeMlp",
            "spec.checkpoints.samplePrompts[0].prompt",
            "spec.checkpoints.samplePrompts[0].seed",
        ] {
            assert!(
                found.iter().any(|p| p.starts_with(&format!("{path}: "))),
                "{path}: {found:?}"
            );
        }
    }

    #[test]
    fn image_presets_resolve_to_image_lora_defaults() {
        use crate::finetunejob::Task;
        use crate::hyperparameters::{HyperparametersSpec, Preset};
        let cases = [
            (Preset::Standard, 1e-4, 8, 16, 16, 10),
            (Preset::Quality, 1e-4, 10, 32, 32, 15),
            (Preset::Fast, 2e-4, 4, 8, 8, 10),
        ];
        for (preset, lr, epochs, rank, alpha, repeats) in cases {
            let r = HyperparametersSpec {
                preset,
                ..Default::default()
            }
            .resolve_for(Task::TextToImage);
            assert_eq!(
                (r.learning_rate, r.epochs, r.batch_size, r.lora_dropout),
                (lr, epochs, 1, 0.0),
                "{preset:?}"
            );
            assert_eq!(
                (r.lora_rank, r.lora_alpha, r.repeats),
                (rank, alpha, repeats)
            );
            assert!(!r.lora_include_mlp);
        }
        let chat = HyperparametersSpec::default().resolve();
        assert_eq!((chat.repeats, chat.resolution), (1, None));
    }
}
