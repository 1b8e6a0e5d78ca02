//! Who is looking at the console, and what they may see. Without sign-in configured
//! (`--console-auth none`) the console shows what the operator sees, which is why it
//! then listens on loopback only. With `token`, a viewer signs in with a Kubernetes
//! token (their kubeconfig's, or `kubectl create token`), which the API server
//! vouches for through a TokenReview; with `header`, an authenticating proxy in front
//! (oauth2-proxy and the like) names the user and groups in request headers. Either
//! way each list and page is then asked of the API server as a SubjectAccessReview
//! for that user: the console never shows more than the viewer may read themselves.

use axum::http::HeaderMap;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, UserInfo};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview};
use kube::api::PostParams;
use kube::{Api, Client};

use crate::shared::subject_access_review::subject_access_review;

/// How the console learns who its viewer is.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConsoleAuth {
    /// No sign-in: the operator's own view, read-only (bind it to loopback).
    #[default]
    None,
    /// A Kubernetes bearer token, checked with a TokenReview.
    Token,
    /// User and groups in headers set by an authenticating proxy in front.
    Header,
}

/// The console's sign-in settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthSettings {
    pub mode: ConsoleAuth,
    /// With `header`: the header naming the user, and the one listing their groups
    /// (comma-separated).
    pub user_header: String,
    pub groups_header: String,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            mode: ConsoleAuth::None,
            user_header: "X-Forwarded-User".to_owned(),
            groups_header: "X-Forwarded-Groups".to_owned(),
        }
    }
}

/// The cookie a signed-in browser presents its token in.
pub const TOKEN_COOKIE: &str = "anneal-console-token";

/// The console's viewer.
#[derive(Clone, Debug, PartialEq)]
pub enum Viewer {
    /// No sign-in configured: everything the operator watches.
    Operator,
    User(UserInfo),
}

impl Viewer {
    /// The name the pages greet the viewer by.
    pub fn name(&self) -> Option<&str> {
        match self {
            Viewer::Operator => None,
            Viewer::User(user) => user.username.as_deref(),
        }
    }
}

/// What came of asking who the viewer is.
#[derive(Debug, PartialEq)]
pub enum Identified {
    Viewer(Viewer),
    /// No credentials: a browser is sent to sign in.
    SignIn,
    /// Credentials that do not hold, and why.
    Refused(String),
}

/// The bearer token of a request: its `Authorization` header, else its cookie.
pub fn presented_token(headers: &HeaderMap) -> Option<String> {
    let bearer = (headers.get(axum::http::header::AUTHORIZATION))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    bearer
        .map(str::to_owned)
        .or_else(|| cookie(headers, TOKEN_COOKIE))
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    (headers.get_all(axum::http::header::COOKIE).iter())
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, value)| *key == name && !value.is_empty())
        .map(|(_, value)| value.to_owned())
}

/// Who sent the request, under `settings`.
pub async fn identify(settings: &AuthSettings, headers: &HeaderMap, client: &Client) -> Identified {
    match settings.mode {
        ConsoleAuth::None => Identified::Viewer(Viewer::Operator),
        ConsoleAuth::Header => identify_by_header(settings, headers),
        ConsoleAuth::Token => match presented_token(headers) {
            None => Identified::SignIn,
            Some(token) => match review_token(client, &token).await {
                Ok(Some(user)) => Identified::Viewer(Viewer::User(user)),
                Ok(None) => Identified::Refused("the API server does not accept this token".into()),
                Err(error) => {
                    Identified::Refused(format!("the token could not be checked: {error}"))
                }
            },
        },
    }
}

/// The user an authenticating proxy names.
pub fn identify_by_header(settings: &AuthSettings, headers: &HeaderMap) -> Identified {
    let value = |name: &str| {
        (headers.get(name))
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let Some(user) = value(&settings.user_header) else {
        return Identified::Refused(format!(
            "no {} header: the console expects an authenticating proxy in front of it",
            settings.user_header
        ));
    };
    let groups = value(&settings.groups_header).map(|groups| {
        (groups.split(',').map(str::trim))
            .filter(|g| !g.is_empty())
            .map(str::to_owned)
            .collect()
    });
    Identified::Viewer(Viewer::User(UserInfo {
        username: Some(user),
        groups,
        ..UserInfo::default()
    }))
}

/// The user the API server says `token` belongs to, or `None` when it does not
/// authenticate.
pub async fn review_token(client: &Client, token: &str) -> kube::Result<Option<UserInfo>> {
    let reviews: Api<TokenReview> = Api::all(client.clone());
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.to_owned()),
            ..TokenReviewSpec::default()
        },
        ..TokenReview::default()
    };
    let answered = reviews.create(&PostParams::default(), &review).await?;
    Ok(answered
        .status
        .filter(|s| s.authenticated == Some(true))
        .and_then(|s| s.user))
}

/// The console's kinds, by their resource (plural) in `anneal.dev`.
pub const FINETUNEJOBS: &str = "finetunejobs";
pub const MODELDEPLOYMENTS: &str = "modeldeployments";
pub const MODELEVALUATIONS: &str = "modelevaluations";

/// May the viewer `verb` the `anneal.dev` `resource` in `namespace` (`None`: all
/// namespaces), or the object called `name`?
pub async fn may(
    client: &Client,
    viewer: &Viewer,
    verb: &str,
    resource: &str,
    namespace: Option<&str>,
    name: Option<&str>,
) -> kube::Result<bool> {
    let Viewer::User(user) = viewer else {
        return Ok(true);
    };
    let reviews: Api<SubjectAccessReview> = Api::all(client.clone());
    let answered = reviews
        .create(
            &PostParams::default(),
            &access_review(user, verb, resource, namespace, name),
        )
        .await?;
    Ok(answered.status.is_some_and(|s| s.allowed))
}

/// The SubjectAccessReview of `user` doing `verb` on `anneal.dev` `resource`.
pub fn access_review(
    user: &UserInfo,
    verb: &str,
    resource: &str,
    namespace: Option<&str>,
    name: Option<&str>,
) -> SubjectAccessReview {
    let attributes = ResourceAttributes {
        namespace: namespace.map(str::to_owned),
        verb: Some(verb.to_owned()),
        group: Some("anneal.dev".to_owned()),
        resource: Some(resource.to_owned()),
        name: name.map(str::to_owned),
        ..ResourceAttributes::default()
    };
    subject_access_review(user, attributes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn a_token_comes_from_the_authorization_header_else_the_cookie() {
        let both = headers(&[
            ("authorization", "Bearer header-token"),
            ("cookie", "a=1; anneal-console-token=cookie-token"),
        ]);
        assert_eq!(presented_token(&both).as_deref(), Some("header-token"));
        let cookie_only = headers(&[("cookie", "a=1"), ("cookie", "anneal-console-token=c; b=2")]);
        assert_eq!(presented_token(&cookie_only).as_deref(), Some("c"));
        for none in [
            headers(&[]),
            headers(&[("authorization", "Basic dXNlcjpwYXNz")]),
            headers(&[("authorization", "Bearer  ")]),
            headers(&[("cookie", "anneal-console-token=")]),
            headers(&[("cookie", "xanneal-console-token=c")]),
        ] {
            assert_eq!(presented_token(&none), None, "{none:?}");
        }
    }

    #[test]
    fn a_proxy_names_the_user_and_groups() {
        let settings = AuthSettings {
            mode: ConsoleAuth::Header,
            ..AuthSettings::default()
        };
        let named = headers(&[
            ("x-forwarded-user", "alice@example.com"),
            ("x-forwarded-groups", "ml-team, ,admins"),
        ]);
        let Identified::Viewer(Viewer::User(user)) = identify_by_header(&settings, &named) else {
            panic!("not identified");
        };
        assert_eq!(user.username.as_deref(), Some("alice@example.com"));
        assert_eq!(user.groups.unwrap(), ["ml-team", "admins"]);
        let Identified::Refused(why) = identify_by_header(&settings, &headers(&[])) else {
            panic!("identified without a header");
        };
        assert!(why.contains("X-Forwarded-User"), "{why}");
    }

    #[test]
    fn the_review_asks_about_finetunejobs_for_the_user() {
        let user = UserInfo {
            username: Some("alice".into()),
            groups: Some(vec!["ml".into()]),
            ..UserInfo::default()
        };
        let review = access_review(&user, "get", FINETUNEJOBS, Some("team-a"), Some("story"));
        let attributes = review.spec.resource_attributes.unwrap();
        assert_eq!(review.spec.user.as_deref(), Some("alice"));
        assert_eq!(review.spec.groups.unwrap(), ["ml"]);
        assert_eq!(
            (
                attributes.verb.as_deref(),
                attributes.group.as_deref(),
                attributes.resource.as_deref(),
                attributes.namespace.as_deref(),
                attributes.name.as_deref()
            ),
            (
                Some("get"),
                Some("anneal.dev"),
                Some("finetunejobs"),
                Some("team-a"),
                Some("story")
            )
        );
        let all = access_review(&user, "list", MODELDEPLOYMENTS, None, None);
        assert_eq!(all.spec.resource_attributes.unwrap().namespace, None);
    }
}
