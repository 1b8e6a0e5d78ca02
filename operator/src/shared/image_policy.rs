//! Which container images a FineTuneJob or ModelDeployment may name in
//! `spec.resources.image`. The job's Secrets (storage credentials, the report token)
//! are mounted into that image, so an author free to pick any image could read every
//! Secret the job may name. Allowed: the operator's own trainer and vLLM images, and
//! the install's `allowedImages` patterns (`*` matches any run of characters,
//! `/` and `:` included; `?` one character).

use globset::{Glob, GlobMatcher};

use crate::config::OperatorConfig;

/// An image the install does not allow, with what it does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "spec.resources.image: {image} is not an image this operator runs; allowed: {} (install option allowedImages)",
    allowed.join(", ")
)]
pub struct ImageNotAllowed {
    pub image: String,
    pub allowed: Vec<String>,
}

/// Checks `image` (the spec's, if it names one) against the install's policy.
pub fn check_image(image: Option<&str>, config: &OperatorConfig) -> Result<(), ImageNotAllowed> {
    let Some(image) = image else { return Ok(()) };
    let own = [&config.trainer_image, &config.vllm_image];
    if own.iter().any(|allowed| allowed.as_str() == image)
        || config
            .allowed_images
            .iter()
            .any(|pattern| matcher(pattern).is_some_and(|m| m.is_match(image)))
    {
        return Ok(());
    }
    Err(ImageNotAllowed {
        image: image.to_owned(),
        allowed: own
            .into_iter()
            .chain(&config.allowed_images)
            .cloned()
            .collect(),
    })
}

fn matcher(pattern: &str) -> Option<GlobMatcher> {
    Glob::new(pattern).ok().map(|glob| glob.compile_matcher())
}

/// Parses one `--allowed-images` pattern, refusing one that is not a glob.
pub fn parse_image_pattern(pattern: &str) -> Result<String, String> {
    let pattern = pattern.trim();
    if pattern.is_empty() {
        return Err("an empty image pattern".to_owned());
    }
    Glob::new(pattern)
        .map(|_| pattern.to_owned())
        .map_err(|error| format!("image pattern {pattern:?}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(patterns: &[&str]) -> OperatorConfig {
        OperatorConfig {
            allowed_images: patterns.iter().map(|p| (*p).to_owned()).collect(),
            ..OperatorConfig::default()
        }
    }

    #[test]
    fn the_operators_own_images_and_no_image_are_always_allowed() {
        let config = config(&[]);
        assert_eq!(check_image(None, &config), Ok(()));
        assert_eq!(
            check_image(Some(&config.trainer_image.clone()), &config),
            Ok(())
        );
        assert_eq!(
            check_image(Some(&config.vllm_image.clone()), &config),
            Ok(())
        );
        let refused = check_image(Some("docker.io/attacker/reads-secrets:1"), &config).unwrap_err();
        let message = refused.to_string();
        assert!(message.starts_with("spec.resources.image: docker.io/attacker/reads-secrets:1"));
        assert!(message.contains(&config.trainer_image) && message.contains("allowedImages"));
    }

    #[test]
    fn patterns_allow_a_registry_or_a_repository() {
        let config = config(&[
            "registry.corp.example/ml/*",
            "ghcr.io/anneal-dev/anneal-trainer:0.?.*",
        ]);
        for allowed in [
            "registry.corp.example/ml/trainer:cu124",
            "registry.corp.example/ml/team-a/trainer@sha256:abc",
            "ghcr.io/anneal-dev/anneal-trainer:0.2.1",
        ] {
            assert_eq!(check_image(Some(allowed), &config), Ok(()), "{allowed}");
        }
        for refused in [
            "registry.corp.example/other/trainer:1",
            "registry.corp.example.evil/ml/trainer:1",
            "ghcr.io/anneal-dev/anneal-trainer:1.0.0",
        ] {
            assert!(check_image(Some(refused), &config).is_err(), "{refused}");
        }
    }

    #[test]
    fn bad_patterns_are_refused_at_start() {
        assert!(parse_image_pattern("registry/[unclosed").is_err());
        assert!(parse_image_pattern("  ").is_err());
        assert_eq!(parse_image_pattern(" a/* ").unwrap(), "a/*");
    }
}
