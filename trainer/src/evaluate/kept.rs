//! What an evaluation has asked so far, kept in its run folder so that an
//! interrupted evaluation (a pod restarted, a served model out of reach, Ctrl-C)
//! continues from there with `--run-id`: each model's answers and losses
//! (`answers/{model}.json`) and each judge's replies (`judged/metric-{k}.json`),
//! written every few seconds while they come and once more at the end or on a
//! failure.
//!
//! Each file carries a fingerprint of what produced its replies (the model's source,
//! the held-out set, the generation settings; for a judge, every request). Replies
//! kept under another fingerprint are not reused: an edited manifest, dataset or
//! retrained checkpoint starts that model over.

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
        Ok(Self {
            run,
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
        let mut keeper = Keeper::open(&run, path.clone(), fingerprint(&["a"]), true).unwrap();
        keeper.add("one".into(), Some(1.5)).unwrap();
        keeper.save().unwrap();
        keeper.add("two".into(), Some(0.5)).unwrap();
        drop(keeper); // interrupted before "two" was written

        let again = Keeper::open(&run, path.clone(), fingerprint(&["a"]), true).unwrap();
        assert_eq!(again.kept().replies, ["one"]);
        assert_eq!(again.kept().reference_losses, Some(vec![1.5]));
        let finished = again.finish().unwrap();
        assert_eq!(finished.replies.len(), 1);

        let other = Keeper::open(&run, path.clone(), fingerprint(&["b"]), true).unwrap();
        assert!(other.kept().replies.is_empty());
        let without_losses = Keeper::open(&run, path, fingerprint(&["a"]), false).unwrap();
        assert!(without_losses.kept().replies.is_empty());
        // Parts are length-prefixed: moving a boundary changes the fingerprint.
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
    }
}
