//! The `trainer` command line: one binary for the trainer pod, serving pods and local
//! mode. Each subcommand reads its flags or manifest here and hands the work to the
//! crate that does it: `anneal-train` (train), `anneal-serve` (serve), `anneal-model`
//! (generate, and the merge of `publish`), `anneal-sources` (fetch) and `anneal-crds`
//! (validate, plan, and the hub upload of `publish`); `doctor`
//! checks the machine with all of them, and `train` and `serve` run its quick checks
//! first on CUDA (`gpu_start`).

pub mod console;
pub mod console_command;
pub mod device_arg;
pub mod doctor;
pub mod doctor_command;
pub mod evaluate;
pub mod evaluate_command;
pub mod fetch_command;
pub mod generate_command;
pub mod generate_image_command;
pub mod gpu_start;
pub mod heap;
pub mod image_plan;
pub mod kernel_cache;
pub mod manifest_file;
pub mod memory_arg;
pub mod mlflow_tracking;
pub mod model_card;
pub mod next_steps;
pub mod plan_command;
pub mod plan_estimate;
pub mod plan_measure;
pub mod publish_command;
pub mod serve_command;
pub mod starting_point;
pub mod train_command;
pub mod train_evaluation;
mod train_image;
pub mod train_progress;
pub mod validate_command;
