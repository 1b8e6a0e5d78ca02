//! Where each hub is and the token to read it with, from the same keys the hubs' own
//! tools read: `HF_ENDPOINT` and `HF_TOKEN` for Hugging Face (mirrors and air-gapped
//! proxies set the endpoint), `MODELSCOPE_ENDPOINT` (or the ModelScope SDK's
//! `MODELSCOPE_DOMAIN`) and `MODELSCOPE_API_TOKEN` for ModelScope.

use super::Hub;

/// The public Hugging Face Hub.
pub const HUGGING_FACE_ENDPOINT: &str = "https://huggingface.co";
/// The public ModelScope hub.
pub const MODELSCOPE_ENDPOINT: &str = "https://www.modelscope.cn";

/// Endpoint and token of one hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubSettings {
    pub hub: Hub,
    /// Base URL, without a trailing slash.
    pub endpoint: String,
    pub token: Option<String>,
}

impl HubSettings {
    /// The settings of `hub` in `variables` (the process environment, or a job's
    /// credentials Secret); later keys win over earlier ones.
    pub fn from_variables<K, V>(hub: Hub, variables: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut endpoint = None;
        let mut token = None;
        for (key, value) in variables {
            let value = value.as_ref().trim();
            if value.is_empty() {
                continue;
            }
            match (hub, key.as_ref()) {
                (Hub::HuggingFace, "HF_ENDPOINT") | (Hub::ModelScope, "MODELSCOPE_ENDPOINT") => {
                    endpoint = Some(value.to_owned());
                }
                (Hub::ModelScope, "MODELSCOPE_DOMAIN") if endpoint.is_none() => {
                    endpoint = Some(if value.contains("://") {
                        value.to_owned()
                    } else {
                        format!("https://{value}")
                    });
                }
                (Hub::HuggingFace, "HF_TOKEN" | "HUGGING_FACE_HUB_TOKEN")
                | (Hub::ModelScope, "MODELSCOPE_API_TOKEN") => token = Some(value.to_owned()),
                _ => {}
            }
        }
        let endpoint = endpoint.unwrap_or_else(|| {
            match hub {
                Hub::HuggingFace => HUGGING_FACE_ENDPOINT,
                Hub::ModelScope => MODELSCOPE_ENDPOINT,
            }
            .to_owned()
        });
        Self {
            hub,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            token,
        }
    }

    /// The settings of `hub` in this process's environment.
    pub fn from_env(hub: Hub) -> Self {
        Self::from_variables(hub, std::env::vars())
    }

    /// The variable a token for this hub is read from, for messages.
    pub fn token_variable(&self) -> &'static str {
        match self.hub {
            Hub::HuggingFace => "HF_TOKEN",
            Hub::ModelScope => "MODELSCOPE_API_TOKEN",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_tokens_come_from_the_hubs_own_variables() {
        let variables = [
            ("HF_ENDPOINT", "https://hf-mirror.example/"),
            ("HF_TOKEN", "hf_abc"),
            ("MODELSCOPE_DOMAIN", "modelscope.example"),
            ("AWS_ACCESS_KEY_ID", "x"),
        ];
        let hf = HubSettings::from_variables(Hub::HuggingFace, variables);
        assert_eq!(hf.endpoint, "https://hf-mirror.example");
        assert_eq!(hf.token.as_deref(), Some("hf_abc"));
        let ms = HubSettings::from_variables(Hub::ModelScope, variables);
        assert_eq!(ms.endpoint, "https://modelscope.example");
        assert_eq!(ms.token, None);
        let bare = HubSettings::from_variables(Hub::HuggingFace, [("HF_TOKEN", " ")]);
        assert_eq!(bare.endpoint, HUGGING_FACE_ENDPOINT);
        assert_eq!(bare.token, None);
    }
}
