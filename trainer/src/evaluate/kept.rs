//! What an evaluation has asked so far, kept in its run folder so that an
//! interrupted evaluation (a pod restarted, a served model out of reach, Ctrl-C)
//! continues from there with `--run-id`: each model's answers and losses
//! (`answers/{model}.json`) and each judge's replies (`judged/metric-{k}.json`),
//! written every few seconds while they come and once more at the end or on a
//! failure.
//!
//! Beside them, `progress.json` counts the replies kept over every model and judge
//! against all the evaluation will ask, written with each of those files: the
//! operator copies it into the ModelEvaluation's `status.progress`.
//!
//! Each file carries a fingerprint of what produced its replies (the model's source,
//! the held-out set, the generation settings; for a judge, every request). Replies
//! kept under another fingerprint are not reused: an edited manifest, dataset or
//! retrained checkpoint starts that model over.

use std::cell::Cell;
use std::time::{Duration, Instant};

use anneal_crds::storage::{Storage, StorageError};
use serde::{Deserialize, Serialize};

/// How often replies are written while they come.
const SAVE_EVERY: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeptReplies {
    pub fingerprint: String,
    pub replies: Vec<String>,
    /// One per reply, where losses on the references are taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_losses: Option<Vec<f64>>,
}

/// Where the progress file is, in the run folder.
pub const PROGRESS_FILE: &str = "progress.json";

/// Replies kept over the whole evaluation, against all it will ask.
#[derive(Debug)]
pub struct Progress {
    total: u64,
    kept: Cell<u64>,
}

impl Progress {
    /// An evaluation of `models` models on `samples` samples, with `judges` judge
    /// metrics of which `pairwise` compare with the baseline too.
    pub fn new(models: usize, samples: usize, judges: usize, pairwise: usize) -> Self {
        let (m, n) = (models as u64, samples as u64);
        let answers = m * n;
        let judged = judges as u64 * m * n + pairwise as u64 * 2 * m.saturating_sub(1) * n;
        Self {
            total: answers + judged,
            kept: Cell::new(0),
        }
    }

    /// (replies kept, replies in all).
    pub fn counts(&self) -> (u64, u64) {
        (self.kept.get(), self.total)
    }

    fn add(&self, replies: usize) {
        self.kept.set(self.kept.get() + replies as u64);
    }

    fn json(&self) -> Vec<u8> {
        let (answered, total) = self.counts();
        serde_json::to_vec(&serde_json::json!({"answered": answered, "total": total}))
            .expect("numbers serialize")
    }
}

/// The SHA-256 of `parts`, each length-prefixed, in hex.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        context.update(&(part.len() as u64).to_le_bytes());
        context.update(part.as_bytes());
    }
    context
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One file of kept replies, and its writing as replies come.
pub struct Keeper<'a> {
    run: &'a Storage,
    progress: &'a Progress,
    path: String,
    kept: KeptReplies,
    saved_at: Instant,
    unsaved: bool,
}

impl<'a> Keeper<'a> {
    /// The replies kept at `path` in `run` under `fingerprint`; none when there are
    /// none or they were made by something else (said on stderr).
    pub fn open(
        run: &'a Storage,
        progress: &'a Progress,
        path: String,
        fingerprint: String,
        with_losses: bool,
    ) -> Result<Self, StorageError> {
        let fresh = KeptReplies {
            fingerprint: fingerprint.clone(),
            replies: Vec::new(),
            reference_losses: with_losses.then(Vec::new),
        };
        let kept = match run.get(&path)? {
            None => fresh,
            Some(bytes) => match serde_json::from_slice::<KeptReplies>(&bytes) {
                Ok(kept)
                    if kept.fingerprint == fingerprint
                        && kept.reference_losses.is_some() == with_losses =>
                {
                    kept
                }
                _ => {
                    eprintln!(
                        "{}/{path}: kept from another manifest, dataset or model; asking again",
                        run.uri()
                    );
                    fresh
                }
            },
        };
        progress.add(kept.replies.len());
        Ok(Self {
            run,
            progress,
            path,
            kept,
            saved_at: Instant::now(),
            unsaved: false,
        })
    }

    /// The replies kept so far.
    pub fn kept(&self) -> &KeptReplies {
        &self.kept
    }

    /// Adds a reply (and its loss), and writes the file when the last write is a few
    /// seconds old.
    pub fn add(&mut self, reply: String, loss: Option<f64>) -> Result<(), StorageError> {
        self.kept.replies.push(reply);
        self.progress.add(1);
        if let (Some(losses), Some(loss)) = (self.kept.reference_losses.as_mut(), loss) {
            losses.push(loss);
        }
        self.unsaved = true;
        if self.saved_at.elapsed() >= SAVE_EVERY {
            self.save()?;
        }
        Ok(())
    }

    /// Writes what is not written yet.
    pub fn save(&mut self) -> Result<(), StorageError> {
        if self.unsaved {
            let json = serde_json::to_vec(&self.kept).expect("replies serialize");
            self.run.put(&self.path, json)?;
            self.run.put(PROGRESS_FILE, self.progress.json())?;
            self.unsaved = false;
            self.saved_at = Instant::now();
        }
        Ok(())
    }

    /// The replies, written.
    pub fn finish(mut self) -> Result<KeptReplies, StorageError> {
        self.save()?;
        Ok(self.kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_kept_only_for_the_same_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let run = Storage::open(&format!("file://{}", dir.path().display())).unwrap();
        let path = "answers/base.json".to_owned();
        let progress = Progress::new(1, 2, 0, 0);
        let mut keeper =
            Keeper::open(&run, &progress, path.clone(), fingerprint(&["a"]), true).unwrap();
        keeper.add("one".into(), Some(1.5)).unwrap();
        keeper.save().unwrap();
        keeper.add("two".into(), Some(0.5)).unwrap();
        drop(keeper); // interrupted before "two" was written

        let progress: serde_json::Value =
            serde_json::from_slice(&run.get(PROGRESS_FILE).unwrap().unwrap()).unwrap();
        assert_eq!(progress, serde_json::json!({"answered": 1, "total": 2}));
        let resumed = Progress::new(1, 2, 0, 0);
        let again = Keeper::open(&run, &resumed, path.clone(), fingerprint(&["a"]), true).unwrap();
        assert_eq!(resumed.counts(), (1, 2), "kept replies count as answered");
        assert_eq!(again.kept().replies, ["one"]);
        assert_eq!(again.kept().reference_losses, Some(vec![1.5]));
        let finished = again.finish().unwrap();
        assert_eq!(finished.replies.len(), 1);

        let other = Keeper::open(&run, &resumed, path.clone(), fingerprint(&["b"]), true).unwrap();
        assert!(other.kept().replies.is_empty());
        let without_losses =
            Keeper::open(&run, &resumed, path, fingerprint(&["a"]), false).unwrap();
        assert!(without_losses.kept().replies.is_empty());
        // 3 models, 10 samples, a pairwise judge: 30 answers, 30 scores, 2 x 2 x 10
        // comparisons.
        assert_eq!(Progress::new(3, 10, 1, 1).counts(), (0, 100));
        // Parts are length-prefixed: moving a boundary changes the fingerprint.
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
    }
}
