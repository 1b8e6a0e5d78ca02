//! The run's event stream: every event is appended to the local `events.jsonl`,
//! handed to the sinks (the progress display in local mode, the operator in a
//! pod), and the file is copied to storage beside the checkpoints whenever a
//! checkpoint lands and when the run ends.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anneal_crds::events::{EventBody, TrainerEvent};

use anneal_crds::storage::{Storage, StorageError};

pub const EVENTS_FILE: &str = "events.jsonl";

/// Something that wants every event as it happens.
pub trait EventSink {
    fn emit(&mut self, event: &TrainerEvent);
}

pub struct EventLog {
    path: PathBuf,
    file: File,
    next_seq: u64,
    sinks: Vec<Box<dyn EventSink>>,
}

impl EventLog {
    /// Continues `events.jsonl` in `dir` (a resumed run keeps the events it had
    /// already stored, and numbers new ones after them) or starts it.
    pub fn open(
        dir: &Path,
        previous: Option<Vec<u8>>,
        sinks: Vec<Box<dyn EventSink>>,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(EVENTS_FILE);
        let previous = previous.unwrap_or_default();
        std::fs::write(&path, &previous)?;
        let last_seq = String::from_utf8_lossy(&previous)
            .lines()
            .filter_map(|line| TrainerEvent::from_line(line).ok())
            .map(|event| event.seq)
            .max()
            .unwrap_or(0);
        let file = OpenOptions::new().append(true).open(&path)?;
        Ok(Self {
            path,
            file,
            next_seq: last_seq + 1,
            sinks,
        })
    }

    pub fn emit(&mut self, body: EventBody) {
        let event = TrainerEvent::now(self.next_seq, body);
        self.next_seq += 1;
        // Losing the local copy must not stop training: the sinks still see the event.
        if let Err(e) = writeln!(self.file, "{}", event.to_line()) {
            eprintln!("warning: writing {}: {e}", self.path.display());
        }
        for sink in &mut self.sinks {
            sink.emit(&event);
        }
    }

    /// Copies the file so far to `events.jsonl` in `storage`.
    pub fn sync(&mut self, storage: &Storage) -> Result<(), StorageError> {
        let _ = self.file.flush();
        let bytes = std::fs::read(&self.path).unwrap_or_default();
        storage.put(EVENTS_FILE, bytes)
    }
}
