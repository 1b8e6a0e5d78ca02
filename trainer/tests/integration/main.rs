//! The trainer's integration tests, in one binary so the suite links once: the models
//! against transformers' numbers, chat templates, LoRA adapters, SFT and DPO steps and
//! runs (local and on S3), the event report, serving, and the `trainer` command line as a
//! user runs it (`trainer doctor` included).

mod support;

mod accumulation;
mod chain_cli;
mod chat_reference;
mod checkpoint_evaluation;
mod console_cli;
mod console_playground;
mod data_parallel;
mod deadline_cli;
mod divergence_cli;
mod doc_commands;
mod doctor_cli;
mod dpo_run;
mod dpo_step;
mod evaluate_cli;
mod generate_cli;
mod generate_image_cli;
mod gpu_start_cli;
mod hub_cli;
mod image_quickstart;
mod image_run;
mod layer_placement;
mod lora_adapter;
mod mix_cli;
mod mlflow_cli;
mod model_loading;
mod model_reference;
mod multi_device_run;
mod out_of_memory_cli;
mod packing_cli;
mod plan_cli;
mod precision;
mod publish_cli;
mod quickstart;
mod recompute;
mod serve_api;
mod serve_images;
mod serve_runtime_lora;
mod sft_step;
mod storage_s3;
mod train_cli;
mod train_report;
mod train_run;
mod train_s3;
mod validate_cli;
