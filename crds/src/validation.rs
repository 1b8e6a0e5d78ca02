//! Spec validation in Rust: every rule of the API, each error with its JSON path.
//!
//! The CRD schema and its CEL rules refuse bad manifests at apply time, but local
//! mode (`trainer train job.yaml`) has no apiserver, and the operator must not trust
//! an object written before a CRD upgrade. So this module checks the same bounds and
//! cross-field rules again, plus what a schema cannot say (URI structure, the shape
//! of sample prompts). Immutability needs the old object and is left to CEL.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::common::BaseModelSpec;
use crate::dataset::Role;
use crate::finetunejob::{FineTuneJob, FineTuneJobSpec, TrainingMethod, TrainingType};
use crate::limits::*;
use crate::modeldeployment::{ModelDeployment, ModelDeploymentSpec};

mod evaluation_fields;
mod task_fields;

pub use evaluation_fields::validate_modelevaluation;

/// One problem with one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted JSON path, e.g. `spec.hyperparameters.lora.rank`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in one object, in field order.
#[derive(Clone, Debug, Default, PartialEq, Eq, thiserror::Error)]
pub struct FieldErrors(pub Vec<FieldError>);

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

impl FieldErrors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    fn into_result(self) -> Result<(), FieldErrors> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }

    fn range<T: PartialOrd + fmt::Display>(
        &mut self,
        path: &str,
        value: Option<T>,
        (min, max): (T, T),
    ) {
        if let Some(value) = value
            && !(min <= value && value <= max)
        {
            self.push(
                path,
                format!("must be between {min} and {max}, got {value}"),
            );
        }
    }

    fn at_most(&mut self, path: &str, value: Option<f64>, max: f64) {
        self.range(path, value, (0.0, max));
    }

    fn positive_at_most(&mut self, path: &str, value: Option<f64>, max: f64) {
        if let Some(value) = value
            && !(value > 0.0 && value <= max)
        {
            self.push(
                path,
                format!("must be greater than 0 and at most {max}, got {value}"),
            );
        }
    }

    fn length(&mut self, path: &str, value: &str, max: usize) {
        if value.is_empty() {
            self.push(path, "must not be empty");
        } else if value.chars().count() > max {
            self.push(path, format!("must be at most {max} characters"));
        }
    }

    fn uri(&mut self, path: &str, value: &str, schemes: &[&str]) {
        self.length(path, value, URI_MAX);
        if !value.is_empty()
            && let Some(problem) = uri_problem(value, schemes)
        {
            self.push(path, problem);
        }
    }
}

const SOURCE_SCHEMES: [&str; 7] = ["s3", "gs", "az", "pvc", "file", "hf", "modelscope"];
const STORAGE_SCHEMES: [&str; 5] = ["s3", "gs", "az", "pvc", "file"];
const ADAPTER_SCHEMES: [&str; 7] = ["s3", "gs", "az", "pvc", "file", "hf", "modelscope"];

/// A base model's name and where it is: a `source`, or a name that is a hub
/// repository. Only a FineTuneJob may start from another job
/// ([`check_job_base_model`]).
pub(crate) fn check_base_model(e: &mut FieldErrors, path: &str, model: &BaseModelSpec) {
    if model.fine_tune_job.is_some() {
        e.push(
            format!("{path}.fineTuneJob"),
            "only a FineTuneJob's baseModel starts from another job (here, name the job's checkpoint with model.fineTuneJob)",
        );
    }
    check_base_model_source(e, path, model);
}

/// A FineTuneJob's base model: as [`check_base_model`], or another FineTuneJob's
/// checkpoint (`final`, `best` or `ckpt-N`) instead of a `source`.
fn check_job_base_model(e: &mut FieldErrors, path: &str, model: &BaseModelSpec) {
    let Some(job) = &model.fine_tune_job else {
        return check_base_model_source(e, path, model);
    };
    e.length(&format!("{path}.name"), &model.name, NAME_MAX);
    if model.source.is_some() {
        e.push(
            format!("{path}.fineTuneJob"),
            "set source or fineTuneJob, not both",
        );
    }
    // The name becomes a storage path segment (the runs of that job).
    if !is_dns_label(&job.name) {
        e.push(
            format!("{path}.fineTuneJob.name"),
            format!("{:?} {DNS_LABEL_RULE}", job.name),
        );
    }
    let checkpoint = job.checkpoint.as_str();
    let named = checkpoint
        .strip_prefix("ckpt-")
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    if !(checkpoint == "final" || checkpoint == "best" || named) {
        e.push(
            format!("{path}.fineTuneJob.checkpoint"),
            format!("must be final, best or a checkpoint's name (ckpt-N), got {checkpoint:?}"),
        );
    }
}

fn check_base_model_source(e: &mut FieldErrors, path: &str, model: &BaseModelSpec) {
    e.length(&format!("{path}.name"), &model.name, NAME_MAX);
    match &model.source {
        Some(source) => e.uri(&format!("{path}.source"), source, &SOURCE_SCHEMES),
        None if crate::hub::hub_form_of_name(&model.name).is_none() => e.push(
            format!("{path}.source"),
            format!(
                "required unless {path}.name is a hub repository (ORG/NAME, fetched from Hugging Face), got name {:?}",
                model.name
            ),
        ),
        None => {}
    }
}

/// What is wrong with a storage URI, if anything: a known scheme, and for bucket
/// and claim schemes a non-empty bucket or claim name.
fn uri_problem(uri: &str, schemes: &[&str]) -> Option<String> {
    let expected = || {
        let list: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
        format!("must start with one of {}, got {uri:?}", list.join(", "))
    };
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Some(expected());
    };
    if !schemes.contains(&scheme) || rest.is_empty() {
        return Some(expected());
    }
    let authority = rest.split('/').next().unwrap_or_default();
    match scheme {
        "s3" | "gs" | "az" if authority.is_empty() => {
            Some(format!("{scheme}:// needs a bucket name, got {uri:?}"))
        }
        "pvc" if !is_dns_label(authority) => Some(format!(
            "pvc://CLAIM/path needs a PersistentVolumeClaim name (lowercase letters, digits and '-'), got {authority:?}"
        )),
        "hf" | "modelscope" => crate::hub::HubRef::parse(uri).and_then(Result::err),
        _ => None,
    }
}

/// `spec.dataset`: one source of training data (a JSONL file, a ConfigMap, or an
/// image folder), and validation data for chat jobs.
fn check_dataset(e: &mut FieldErrors, spec: &FineTuneJobSpec) {
    let dataset = &spec.dataset;
    match (&dataset.train, &dataset.config_map, &dataset.images) {
        (Some(train), None, None) => e.uri("spec.dataset.train", train, &SOURCE_SCHEMES),
        (None, Some(config_map), None) => {
            e.length("spec.dataset.configMap.name", &config_map.name, NAME_MAX);
            e.length("spec.dataset.configMap.key", &config_map.key, NAME_MAX);
        }
        (None, None, Some(images)) => e.uri("spec.dataset.images", images, &STORAGE_SCHEMES),
        _ => e.push(
            "spec.dataset",
            "set exactly one of dataset.train, dataset.configMap and dataset.images",
        ),
    }
    if dataset.mix.len() > crate::limits::MIX_MAX {
        e.push(
            "spec.dataset.mix",
            format!(
                "at most {} datasets, got {}",
                crate::limits::MIX_MAX,
                dataset.mix.len()
            ),
        );
    }
    for (index, mixed) in dataset.mix.iter().enumerate() {
        e.uri(
            &format!("spec.dataset.mix[{index}].uri"),
            &mixed.uri,
            &SOURCE_SCHEMES,
        );
        let (low, high) = crate::limits::MIX_WEIGHT;
        if !(mixed.weight.is_finite() && (low..=high).contains(&mixed.weight)) {
            e.push(
                format!("spec.dataset.mix[{index}].weight"),
                format!("must be between {low} and {high}, got {}", mixed.weight),
            );
        }
    }
    if dataset.packing == Some(true) && spec.method == TrainingMethod::Dpo {
        e.push(
            "spec.dataset.packing",
            "packs chats for method: sft; a DPO pair's chosen and rejected replies are compared row by row, unpacked",
        );
    }
    if let Some(validation) = &dataset.validation {
        e.uri("spec.dataset.validation", validation, &SOURCE_SCHEMES);
        if dataset.validation_split.is_some() {
            e.push(
                "spec.dataset",
                "set at most one of dataset.validation and dataset.validationSplit",
            );
        }
    }
    e.at_most(
        "spec.dataset.validationSplit",
        dataset.validation_split,
        VALIDATION_SPLIT_MAX,
    );
}

/// `spec.tracking`: the tracking server's URL.
fn check_tracking(e: &mut FieldErrors, spec: &FineTuneJobSpec) {
    if let Some(mlflow) = spec.tracking.as_ref().and_then(|t| t.mlflow.as_ref()) {
        e.uri("spec.tracking.mlflow.uri", &mlflow.uri, &["https", "http"]);
        if let Some(experiment) = &mlflow.experiment {
            e.length("spec.tracking.mlflow.experiment", experiment, NAME_MAX);
        }
    }
}

/// `spec.notify`: each receiver's URL and signing Secret.
fn check_notify(e: &mut FieldErrors, spec: &FineTuneJobSpec) {
    check_receivers(e, "spec.notify", &spec.notify);
}

/// Notification receivers, at `path` (`spec.notify`, or a namespace's
/// `anneal-notify` ConfigMap): at most `NOTIFY_MAX`, http(s) URLs, Secret names that
/// are names.
fn check_receivers(e: &mut FieldErrors, path: &str, receivers: &[crate::finetunejob::NotifySpec]) {
    if receivers.len() > crate::limits::NOTIFY_MAX {
        e.push(
            path,
            format!(
                "at most {} receivers, got {}",
                crate::limits::NOTIFY_MAX,
                receivers.len()
            ),
        );
    }
    for (i, receiver) in receivers.iter().enumerate() {
        let path = format!("{path}[{i}]");
        e.uri(&format!("{path}.url"), &receiver.url, &["https", "http"]);
        if let Some(secret) = &receiver.signing_secret
            && !is_dns_label(&secret.name)
        {
            e.push(
                format!("{path}.signingSecret.name"),
                format!("{:?} {DNS_LABEL_RULE}", secret.name),
            );
        }
    }
}

/// The receivers a namespace's `anneal-notify` ConfigMap lists under `key`, checked as
/// `spec.notify` is; errors name `{key}[i].url` and so on.
pub fn namespace_receivers(
    key: &str,
    yaml: &str,
) -> Result<Vec<crate::finetunejob::NotifySpec>, String> {
    let receivers: Vec<crate::finetunejob::NotifySpec> =
        serde_yaml_ng::from_str(yaml).map_err(|e| format!("{key}: {e}"))?;
    let mut e = FieldErrors::default();
    check_receivers(&mut e, key, &receivers);
    e.into_result().map_err(|errors| errors.to_string())?;
    Ok(receivers)
}

/// `spec.publish`: where each checkpoint may go, and whether it can be merged.
fn check_publish(e: &mut FieldErrors, spec: &FineTuneJobSpec) {
    if spec.publish.len() > PUBLISH_MAX {
        e.push(
            "spec.publish",
            format!("at most {PUBLISH_MAX} entries, got {}", spec.publish.len()),
        );
    }
    for (i, entry) in spec.publish.iter().enumerate() {
        e.length(
            &format!("spec.publish[{i}].checkpoint"),
            &entry.checkpoint,
            NAME_MAX,
        );
        let to = format!("spec.publish[{i}].to");
        e.uri(&to, &entry.to, &["hf", "modelscope", "s3"]);
        if entry.merge && spec.training == TrainingType::Full {
            e.push(
                format!("spec.publish[{i}].merge"),
                "a fully trained job's checkpoints are whole models already; leave merge unset",
            );
        }
        if spec.publish[..i].iter().any(|other| {
            other.to == entry.to
                && other.merge == entry.merge
                && other.checkpoint == entry.checkpoint
        }) {
            e.push(format!("spec.publish[{i}]"), "the same as an earlier entry");
        }
    }
}

/// `spec.checkpoints`: when to save, what to ask at each, and early stopping (which
/// needs validation data from `spec.dataset`).
fn check_checkpoints(e: &mut FieldErrors, spec: &FineTuneJobSpec) {
    let c = &spec.checkpoints;
    if c.every_steps == Some(0) {
        e.push("spec.checkpoints.everySteps", "must be at least 1, got 0");
    }
    e.range("spec.checkpoints.keep", c.keep, (1, CHECKPOINTS_KEEP_MAX));
    if c.sample_prompts.len() > SAMPLE_PROMPTS_MAX {
        e.push(
            "spec.checkpoints.samplePrompts",
            format!(
                "at most {SAMPLE_PROMPTS_MAX} prompts, got {}",
                c.sample_prompts.len()
            ),
        );
    }
    for (i, prompt) in c.sample_prompts.iter().enumerate() {
        // An image job's prompts are checked with its other fields.
        if !spec.task.is_image() && prompt.prompt.is_none() {
            let path = format!("spec.checkpoints.samplePrompts[{i}].messages");
            check_prompt(e, &path, &prompt.messages);
        }
    }
    if let Some(early) = &c.early_stopping {
        e.range(
            "spec.checkpoints.earlyStopping.patience",
            Some(early.patience),
            EARLY_STOPPING_PATIENCE,
        );
        e.at_most(
            "spec.checkpoints.earlyStopping.minDelta",
            Some(early.min_delta),
            EARLY_STOPPING_MIN_DELTA_MAX,
        );
        if spec.task.is_image() {
            e.push(
                "spec.checkpoints.earlyStopping",
                "an image job has no validation data to judge by: choose among the epochs' samples instead",
            );
        } else if spec.dataset.validation.is_none()
            && spec.dataset.resolved_validation_split() <= 0.0
            && c.evaluation.is_none()
        {
            e.push(
                "spec.checkpoints.earlyStopping",
                "needs something to judge by: set spec.dataset.validation, a validationSplit above 0, or spec.checkpoints.evaluation",
            );
        }
    }
    if let Some(evaluation) = &c.evaluation {
        evaluation_fields::check_checkpoint_evaluation(
            e,
            "spec.checkpoints.evaluation",
            evaluation,
        );
    }
}

/// Whether `name` is a DNS-1035 label, as a Service's name must be: a DNS label that
/// starts with a letter.
pub fn is_service_name(name: &str) -> bool {
    is_dns_label(name) && name.starts_with(|c: char| c.is_ascii_lowercase())
}

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// What a name must be to serve as a Kubernetes object name and a storage path
/// segment alike (run folders are `{namespace}/{name}/...`).
const DNS_LABEL_RULE: &str = "must be a Kubernetes name: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters";

/// Errors for `metadata.name` and `metadata.namespace` that are not DNS labels: the
/// API server enforces that for namespaces, but a manifest trained locally has none to
/// ask, and a name such as `../x` must never reach a storage path.
fn check_object_names(e: &mut FieldErrors, metadata: &ObjectMeta) {
    for (path, value) in [
        ("metadata.name", &metadata.name),
        ("metadata.namespace", &metadata.namespace),
    ] {
        if let Some(value) = value
            && !is_dns_label(value)
        {
            e.push(path, format!("{value:?} {DNS_LABEL_RULE}"));
        }
    }
}

/// Checks a FineTuneJob: its name and its spec.
pub fn validate_finetunejob(job: &FineTuneJob) -> Result<(), FieldErrors> {
    let mut errors = FieldErrors::default();
    check_object_names(&mut errors, &job.metadata);
    if let Some(name) = &job.metadata.name
        && name.chars().count() > JOB_NAME_MAX
    {
        errors.push(
            "metadata.name",
            format!(
                "must be at most {JOB_NAME_MAX} characters, so that the names of the trainer Job and its Secret fit"
            ),
        );
    }
    if let (Some(name), Some(parent)) = (&job.metadata.name, &job.spec.base_model.fine_tune_job)
        && *name == parent.name
    {
        errors.push(
            "spec.baseModel.fineTuneJob.name",
            "a job cannot start from its own checkpoint",
        );
    }
    if let Err(spec_errors) = job.spec.validate() {
        errors.0.extend(spec_errors.0);
    }
    errors.into_result()
}

impl FineTuneJobSpec {
    /// Every field error in the spec; paths start at `spec.`.
    pub fn validate(&self) -> Result<(), FieldErrors> {
        let mut e = FieldErrors::default();

        check_job_base_model(&mut e, "spec.baseModel", &self.base_model);

        check_dataset(&mut e, self);
        let h = &self.hyperparameters;
        e.positive_at_most(
            "spec.hyperparameters.learningRate",
            h.learning_rate,
            LEARNING_RATE_MAX,
        );
        e.range("spec.hyperparameters.epochs", h.epochs, EPOCHS);
        e.range("spec.hyperparameters.batchSize", h.batch_size, BATCH_SIZE);
        e.range("spec.hyperparameters.maxTokens", h.max_tokens, MAX_TOKENS);
        e.at_most(
            "spec.hyperparameters.warmupRatio",
            h.warmup_ratio,
            WARMUP_RATIO_MAX,
        );
        e.at_most(
            "spec.hyperparameters.weightDecay",
            h.weight_decay,
            WEIGHT_DECAY_MAX,
        );
        e.range(
            "spec.hyperparameters.gradientAccumulation",
            h.gradient_accumulation,
            GRADIENT_ACCUMULATION,
        );
        let batch = h.resolve_for(self.task).batch_size;
        if let Some(accumulation) = h.gradient_accumulation
            && accumulation != 0
            && !batch.is_multiple_of(accumulation)
        {
            e.push(
                "spec.hyperparameters.gradientAccumulation",
                format!("must divide the batch size ({batch}), got {accumulation}"),
            );
        }
        if let Some(lora) = &h.lora {
            e.range("spec.hyperparameters.lora.rank", lora.rank, LORA_RANK);
            e.range("spec.hyperparameters.lora.alpha", lora.alpha, LORA_ALPHA);
            e.at_most(
                "spec.hyperparameters.lora.dropout",
                lora.dropout,
                LORA_DROPOUT_MAX,
            );
            if let Some(modules) = &lora.target_modules {
                if modules.is_empty() {
                    e.push(
                        "spec.hyperparameters.lora.targetModules",
                        "must name at least one module",
                    );
                }
                for (i, module) in modules.iter().enumerate() {
                    if modules[..i].contains(module) {
                        e.push(
                            format!("spec.hyperparameters.lora.targetModules[{i}]"),
                            format!("{} is listed twice", module.hf_name()),
                        );
                    }
                }
            }
        }
        if let Some(dpo) = &h.dpo {
            if self.method != TrainingMethod::Dpo {
                e.push(
                    "spec.hyperparameters.dpo",
                    "hyperparameters.dpo is only allowed with method: dpo",
                );
            }
            e.positive_at_most("spec.hyperparameters.dpo.beta", dpo.beta, DPO_BETA_MAX);
            e.at_most(
                "spec.hyperparameters.dpo.labelSmoothing",
                dpo.label_smoothing,
                DPO_LABEL_SMOOTHING_MAX,
            );
            e.at_most(
                "spec.hyperparameters.dpo.sftWeight",
                dpo.sft_weight,
                DPO_SFT_WEIGHT_MAX,
            );
        }

        check_checkpoints(&mut e, self);
        task_fields::check_task_fields(&mut e, self);
        check_publish(&mut e, self);
        check_notify(&mut e, self);
        check_tracking(&mut e, self);

        if let Some(output) = &self.output {
            e.uri("spec.output.uri", &output.uri, &STORAGE_SCHEMES);
            if let Some(secret) = &output.credentials_secret {
                e.length("spec.output.credentialsSecret", secret, NAME_MAX);
            }
        }
        check_resources(&mut e, "spec.resources", &self.resources);
        if let Some(queue) = &self.queue_name {
            e.length("spec.queueName", queue, 63);
        }
        e.range(
            "spec.activeDeadlineSeconds",
            self.active_deadline_seconds,
            ACTIVE_DEADLINE_SECONDS,
        );
        e.into_result()
    }
}

/// A sample prompt is a conversation the model answers next: it follows the
/// dataset's turn rules and ends on a user message.
fn check_prompt(e: &mut FieldErrors, path: &str, messages: &[crate::dataset::ChatMessage]) {
    if messages.is_empty() || messages.len() > PROMPT_MESSAGES_MAX {
        e.push(
            path,
            format!(
                "must hold 1 to {PROMPT_MESSAGES_MAX} messages, got {}",
                messages.len()
            ),
        );
        return;
    }
    for (i, message) in messages.iter().enumerate() {
        let content_len = message.content.chars().count();
        if content_len > PROMPT_CONTENT_MAX {
            e.push(
                format!("{path}[{i}].content"),
                format!("must be at most {PROMPT_CONTENT_MAX} characters, got {content_len}"),
            );
        }
        if message.role == Role::System && i > 0 {
            e.push(
                format!("{path}[{i}].role"),
                "a system message may only be first",
            );
        }
    }
    if messages.last().map(|m| m.role) != Some(Role::User) {
        e.push(path, "a sample prompt must end on a user message");
    }
}

fn check_resources(e: &mut FieldErrors, path: &str, resources: &crate::common::ResourcesSpec) {
    e.range(&format!("{path}.gpus"), Some(resources.gpus), (0, GPUS_MAX));
    e.length(
        &format!("{path}.gpuResourceName"),
        &resources.gpu_resource_name,
        NAME_MAX,
    );
    if let Some(image) = &resources.image {
        e.length(&format!("{path}.image"), image, URI_MAX);
    }
    if let Some(scratch) = &resources.scratch
        && let Err(error) = scratch.0.parse::<crate::memory_plan::ByteSize>()
    {
        e.push(
            format!("{path}.scratch"),
            format!(
                "{:?} is not a size ({}); write it like 300Gi",
                error.text, error.reason
            ),
        );
    }
}

/// Checks a ModelDeployment's spec.
pub fn validate_modeldeployment(deployment: &ModelDeployment) -> Result<(), FieldErrors> {
    let mut errors = FieldErrors::default();
    check_object_names(&mut errors, &deployment.metadata);
    if let Err(spec_errors) = deployment.spec.validate() {
        errors.0.extend(spec_errors.0);
    }
    errors.into_result()
}

impl ModelDeploymentSpec {
    /// Every field error in the spec; paths start at `spec.`.
    pub fn validate(&self) -> Result<(), FieldErrors> {
        let mut e = FieldErrors::default();
        let model = &self.model;
        match (&model.fine_tune_job, &model.base_model) {
            (Some(job), None) => {
                e.length("spec.model.fineTuneJob.name", &job.name, NAME_MAX);
                e.length(
                    "spec.model.fineTuneJob.checkpoint",
                    &job.checkpoint,
                    NAME_MAX,
                );
            }
            (None, Some(base)) => check_base_model(&mut e, "spec.model.baseModel", base),
            _ => e.push(
                "spec.model",
                "set exactly one of model.fineTuneJob and model.baseModel",
            ),
        }
        if !model.adapters.is_empty() && model.base_model.is_none() {
            e.push(
                "spec.model.adapters",
                "model.adapters go with model.baseModel; a fineTuneJob brings its own adapter",
            );
        }
        if model.adapters.len() > ADAPTERS_MAX {
            e.push(
                "spec.model.adapters",
                format!(
                    "at most {ADAPTERS_MAX} adapters, got {}",
                    model.adapters.len()
                ),
            );
        }
        for (i, adapter) in model.adapters.iter().enumerate() {
            e.length(
                &format!("spec.model.adapters[{i}].name"),
                &adapter.name,
                NAME_MAX,
            );
            e.uri(
                &format!("spec.model.adapters[{i}].uri"),
                &adapter.uri,
                &ADAPTER_SCHEMES,
            );
            if model.adapters[..i].iter().any(|a| a.name == adapter.name) {
                e.push(
                    format!("spec.model.adapters[{i}].name"),
                    format!("{:?} is used by an earlier adapter", adapter.name),
                );
            }
        }
        if let Some(name) = &self.served_model_name {
            e.length("spec.servedModelName", name, NAME_MAX);
        }
        e.range("spec.replicas", Some(self.replicas), (0, REPLICAS_MAX));
        check_resources(&mut e, "spec.resources", &self.resources);
        if let Some(problem) = self.idle_gpus() {
            e.push("spec.resources.gpus", problem);
        }
        e.into_result()
    }
}
