//! Anneal's operator. So far: the verdict of the Validating phase, which every
//! FineTuneJob passes before a GPU is asked for.

pub mod validation_verdict;
