//! What a hub URI refers to: which hub, which repository, which revision.

use std::fmt;

/// A model hub Anneal downloads from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hub {
    HuggingFace,
    ModelScope,
}

impl Hub {
    /// The URI scheme that names it.
    pub fn scheme(self) -> &'static str {
        match self {
            Hub::HuggingFace => "hf",
            Hub::ModelScope => "modelscope",
        }
    }

    /// The branch a reference without `@REV` means.
    pub fn default_revision(self) -> &'static str {
        match self {
            Hub::HuggingFace => "main",
            Hub::ModelScope => "master",
        }
    }
}

/// A repository on a hub at a revision (a branch, tag or commit).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HubRef {
    pub hub: Hub,
    /// `ORG/NAME`.
    pub repo: String,
    /// As written after `@`; `None` means the hub's default branch.
    pub revision: Option<String>,
}

impl HubRef {
    /// Reads `hf://ORG/NAME[@REV]` or `modelscope://ORG/NAME[@REV]`: `None` for other
    /// schemes, `Some(Err(why))` for a hub URI of the wrong form.
    pub fn parse(uri: &str) -> Option<Result<Self, String>> {
        let (hub, rest) = if let Some(rest) = uri.strip_prefix("hf://") {
            (Hub::HuggingFace, rest)
        } else if let Some(rest) = uri.strip_prefix("modelscope://") {
            (Hub::ModelScope, rest)
        } else {
            return None;
        };
        let scheme = hub.scheme();
        let wrong =
            || format!("{scheme}:// takes the form {scheme}://ORG/NAME[@REVISION], got {uri:?}");
        let rest = rest.trim_end_matches('/');
        let (repo, revision) = match rest.split_once('@') {
            Some((repo, revision)) => (repo, Some(revision)),
            None => (rest, None),
        };
        let parts: Vec<&str> = repo.split('/').collect();
        if parts.len() != 2 || !parts.iter().all(|part| is_repo_part(part)) {
            return Some(Err(wrong()));
        }
        if let Some(revision) = revision
            && !is_revision(revision)
        {
            return Some(Err(format!(
                "{scheme}://: the revision after @ must be a branch, tag or commit (letters, digits, '.', '_', '-'), got {revision:?}"
            )));
        }
        Some(Ok(Self {
            hub,
            repo: repo.to_owned(),
            revision: revision.map(str::to_owned),
        }))
    }

    /// The revision to resolve: the one written, else the hub's default branch.
    pub fn revision_or_default(&self) -> &str {
        self.revision
            .as_deref()
            .unwrap_or_else(|| self.hub.default_revision())
    }
}

impl fmt::Display for HubRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.hub.scheme(), self.repo)?;
        if let Some(revision) = &self.revision {
            write!(f, "@{revision}")?;
        }
        Ok(())
    }
}

/// The hub URI a `baseModel` with a name and no source means: `ORG/NAME` is that
/// repository on Hugging Face (`hf://ORG/NAME`); a name without an organization
/// names no repository.
pub fn hub_form_of_name(name: &str) -> Option<String> {
    let (org, model) = name.split_once('/')?;
    (is_repo_part(org) && is_repo_part(model)).then(|| format!("hf://{org}/{model}"))
}

/// A Hub organization or repository name: letters, digits, `-`, `_`, `.`, not
/// starting or ending with `.` or `-` (what both hubs accept).
fn is_repo_part(part: &str) -> bool {
    (1..=96).contains(&part.len())
        && part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !part.starts_with(['.', '-'])
        && !part.ends_with(['.', '-'])
}

fn is_revision(revision: &str) -> bool {
    (1..=128).contains(&revision.len())
        && revision
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !revision.starts_with('.')
        && !revision.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_uris_name_a_repository_and_maybe_a_revision() {
        assert_eq!(
            HubRef::parse("hf://Qwen/Qwen2.5-7B-Instruct")
                .unwrap()
                .unwrap(),
            HubRef {
                hub: Hub::HuggingFace,
                repo: "Qwen/Qwen2.5-7B-Instruct".into(),
                revision: None
            }
        );
        let pinned = HubRef::parse("modelscope://qwen/Qwen2.5-0.5B-Instruct@v1.0.1")
            .unwrap()
            .unwrap();
        assert_eq!(pinned.hub, Hub::ModelScope);
        assert_eq!(pinned.revision_or_default(), "v1.0.1");
        assert_eq!(
            pinned.to_string(),
            "modelscope://qwen/Qwen2.5-0.5B-Instruct@v1.0.1"
        );
        assert_eq!(
            HubRef::parse("hf://a/b")
                .unwrap()
                .unwrap()
                .revision_or_default(),
            "main"
        );
        assert!(HubRef::parse("s3://bucket/model").is_none());
    }

    #[test]
    fn hub_uris_of_the_wrong_form_say_the_form() {
        for uri in [
            "hf://just-a-name",
            "hf://a/b/c",
            "hf://../b",
            "modelscope://a/",
        ] {
            let error = HubRef::parse(uri).unwrap().unwrap_err();
            assert!(error.contains("ORG/NAME[@REVISION]"), "{uri}: {error}");
        }
        let error = HubRef::parse("hf://a/b@refs/pr/1").unwrap().unwrap_err();
        assert!(error.contains("the revision after @"), "{error}");
        let error = HubRef::parse("hf://a/b@../../x").unwrap().unwrap_err();
        assert!(
            error.contains("ORG/NAME") || error.contains("revision"),
            "{error}"
        );
    }

    #[test]
    fn a_name_alone_means_its_hugging_face_repository() {
        assert_eq!(
            hub_form_of_name("meta-llama/Meta-Llama-3.1-8B-Instruct").as_deref(),
            Some("hf://meta-llama/Meta-Llama-3.1-8B-Instruct")
        );
        assert_eq!(hub_form_of_name("tiny-chat"), None);
        assert_eq!(hub_form_of_name("a/b/c"), None);
    }
}
