//! The image folder of an image job (`task: text-to-image`) checked in the Validating
//! phase, before a pod is scheduled: the folder listed in object storage with the
//! job's credentials, then every caption read and every image's header (format and
//! size) read by the rules `trainer validate` applies, each problem naming its file.
//! Pixels are never decoded here: an image may claim 8,192 pixels a side, and the
//! operator's memory is shared by every tenant; the trainer decodes each image whole
//! as it loads the folder, before its model.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anneal_crds::image_dataset::{
    CaptionFallback, FolderFile, ImageFolderLimits, ImageFolderReport, check_image_headers,
};
use anneal_crds::storage::AsyncStorage;

use crate::error::{Error, Result};
use crate::finetunejob::validation_verdict::{Verdict, judge_image_folder};

/// Time listing and reading a folder may take before the reconcile gives up and
/// retries: up to 300 MB of images and captions.
pub const IMAGE_CHECK_TIMEOUT: Duration = Duration::from_secs(300);

/// Judges the folder at `uri` (an `s3://` prefix) for a job whose
/// `hyperparameters.triggerWord` is `trigger_word`.
pub async fn check_image_folder(
    uri: &str,
    settings: Vec<(String, String)>,
    trigger_word: Option<String>,
) -> Result<Verdict> {
    check_image_folder_within(uri, settings, trigger_word, IMAGE_CHECK_TIMEOUT).await
}

pub(crate) async fn check_image_folder_within(
    uri: &str,
    settings: Vec<(String, String)>,
    trigger_word: Option<String>,
    timeout: Duration,
) -> Result<Verdict> {
    let source = format!("spec.dataset.images {uri}");
    let deadline = Instant::now() + timeout;
    let timed_out = || Error::Timeout {
        what: uri.to_owned(),
        limit: timeout,
    };
    let storage = AsyncStorage::open_with(uri.trim_end_matches('/'), settings)?;
    let listing = tokio::time::timeout(timeout, storage.list_files(""))
        .await
        .map_err(|_| timed_out())??;
    let files: Vec<FolderFile> = listing
        .into_iter()
        .map(|(name, size)| FolderFile { name, size })
        .collect();
    let fallback = match trigger_word {
        Some(word) => CaptionFallback::TriggerWord(word),
        None => CaptionFallback::None,
    };
    let late = Arc::new(AtomicBool::new(false));
    let handle = tokio::runtime::Handle::current();
    let report = {
        let late = late.clone();
        // Off the async workers: the reads wait on this handle one file at a time.
        tokio::task::spawn_blocking(move || -> ImageFolderReport {
            check_image_headers(
                &files,
                &fallback,
                &ImageFolderLimits::default(),
                &mut |name| {
                    if Instant::now() > deadline {
                        late.store(true, Ordering::SeqCst);
                        return Err("was not read in time".to_owned());
                    }
                    match handle.block_on(storage.get(name)) {
                        Ok(Some(bytes)) => Ok(bytes),
                        Ok(None) => Err("disappeared while the folder was read".to_owned()),
                        Err(error) => Err(format!("cannot be read: {error}")),
                    }
                },
            )
        })
        .await
        .map_err(|error| Error::DatasetCheckPanicked(error.to_string()))?
    };
    if late.load(Ordering::SeqCst) {
        return Err(timed_out());
    }
    Ok(judge_image_folder(&source, &report))
}
