//! The FineTuneJob kind: judging a job's spec, datasets and memory plan, planning its trainer Job
//! and Secret, reading the trainer's progress back into status, and the report
//! endpoint's view of jobs in the cluster, publishing checkpoints once a job has
//! succeeded; `controller` ties them together.

pub mod controller;
pub mod dataset_check;
pub mod image_folder_check;
pub mod job_estimate;
pub mod kube_report;
pub mod memory_verdict;
pub mod model_shape_check;
pub mod publish_job;
pub mod publishing;
pub mod starting_job;
pub mod storage_access;
pub mod trainer_deadline;
pub mod trainer_job;
pub mod trainer_observation;
pub mod validation_verdict;
