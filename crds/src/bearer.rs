//! Bearer tokens, as the operator's report endpoint and `trainer serve`'s adapter
//! endpoints check them: the token of an `Authorization` header, and a comparison in
//! time that does not depend on where two tokens differ, so response timing does not
//! reveal a token byte by byte.

/// The token of an `Authorization: Bearer TOKEN` header value, if it is one.
pub fn bearer_token_of(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Whether `presented` is `expected`. Only the length can leak through timing (a
/// token's length is no secret: they are generated at one fixed length). An empty
/// expected token never matches, so a broken Secret cannot open an endpoint.
pub fn tokens_match(presented: &str, expected: &str) -> bool {
    let (presented, expected) = (presented.as_bytes(), expected.as_bytes());
    if expected.is_empty() || presented.len() != expected.len() {
        return false;
    }
    let difference = presented
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    // Keeps the compiler from turning the fold into an early-exit comparison.
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bearer_headers_carry_a_token() {
        assert_eq!(bearer_token_of("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token_of("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token_of("Basic abc"), None);
        assert_eq!(bearer_token_of("Bearer "), None);
        assert_eq!(bearer_token_of(""), None);
    }

    #[test]
    fn tokens_match_exactly() {
        assert!(tokens_match("secret", "secret"));
        assert!(!tokens_match("secreT", "secret"));
        assert!(!tokens_match("secret1", "secret"));
        assert!(!tokens_match("", ""));
    }
}
