//! Bringing the models local: the base model and each adapter as a folder on this
//! machine (downloaded when remote, checked against its `COMPLETE` marker), and the
//! names they are served under, all before any weight is read.

use std::path::PathBuf;

use anneal_sources::{FolderSource, make_local};

use crate::{ServeError, ServeOptions};

/// The models as local folders, checked before any weight is read.
pub(crate) struct Prepared {
    pub options: ServeOptions,
    pub model_dir: PathBuf,
    pub base_name: String,
    pub adapters: Vec<(String, PathBuf)>,
    /// Where remote folders go (adapters loaded at runtime too).
    pub work_dir: PathBuf,
    _scratch: Option<tempfile::TempDir>,
}

pub(crate) fn prepare(options: &ServeOptions) -> Result<Prepared, ServeError> {
    if options.max_running == 0 {
        return Err(ServeError::NoRunningSlot);
    }
    let base_source = FolderSource::from_flag(&options.model, "--model")?;
    let mut adapters = Vec::new();
    for value in &options.adapters {
        let (name, source) = value
            .split_once('=')
            .filter(|(name, source)| !name.is_empty() && !source.is_empty())
            .ok_or_else(|| ServeError::AdapterSyntax {
                value: value.clone(),
            })?;
        let source = FolderSource::from_flag(source, "--adapter")?;
        adapters.push((name.to_owned(), source));
    }
    let base_name = match &options.served_model_name {
        Some(name) => name.clone(),
        None => default_name(&options.model),
    };
    let mut names: Vec<&str> = vec![&base_name];
    for (name, _) in &adapters {
        if names.contains(&name.as_str()) {
            return Err(ServeError::NameServedTwice { name: name.clone() });
        }
        names.push(name);
    }

    let remote = matches!(base_source, FolderSource::Remote(_))
        || adapters
            .iter()
            .any(|(_, s)| matches!(s, FolderSource::Remote(_)));
    // Adapters loaded at runtime may come from s3:// or a hub: they need a folder too.
    let (work, scratch) = match (&options.work_dir, remote || options.runtime_lora) {
        (Some(dir), _) => (dir.clone(), None),
        (None, true) => {
            let temp = tempfile::Builder::new()
                .prefix("anneal-serve-")
                .tempdir()
                .map_err(ServeError::WorkDir)?;
            (temp.path().to_path_buf(), Some(temp))
        }
        (None, false) => (PathBuf::new(), None),
    };
    let model_dir = make_local(&base_source, &work.join("base-model"), "--model")?;
    let adapters = adapters
        .into_iter()
        .enumerate()
        .map(|(i, (name, source))| {
            let dir = make_local(&source, &work.join(format!("adapter-{i}")), "--adapter")?;
            Ok((name, dir))
        })
        .collect::<Result<Vec<_>, ServeError>>()?;
    Ok(Prepared {
        options: options.clone(),
        model_dir,
        base_name,
        adapters,
        work_dir: work,
        _scratch: scratch,
    })
}

/// The last segment of a path or URI: `models/anneal-tiny` serves as `anneal-tiny`.
fn default_name(source: &str) -> String {
    let trimmed = source.trim_end_matches('/');
    let last = trimmed.rsplit('/').next().unwrap_or(trimmed);
    if last.is_empty() || last == "." {
        "base".to_owned()
    } else {
        last.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_model_is_named_after_its_folder() {
        assert_eq!(default_name("examples/models/anneal-tiny"), "anneal-tiny");
        assert_eq!(default_name("s3://models/qwen2.5-7b/"), "qwen2.5-7b");
        assert_eq!(default_name("."), "base");
    }
}
