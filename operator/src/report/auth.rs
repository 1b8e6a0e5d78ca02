//! Bearer tokens on trainer posts: the token of the `Authorization` header, compared
//! with the job's in constant time (`anneal_crds::bearer`).

use http::HeaderMap;
use http::header::AUTHORIZATION;

pub use anneal_crds::bearer::tokens_match;

/// The token of an `Authorization: Bearer TOKEN` header, if there is one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    anneal_crds::bearer::bearer_token_of(headers.get(AUTHORIZATION)?.to_str().ok()?)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn the_token_comes_from_the_authorization_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer_token(&headers), None);
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(bearer_token(&headers), Some("abc"));
    }
}
