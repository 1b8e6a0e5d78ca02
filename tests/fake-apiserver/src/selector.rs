//! `labelSelector` and `fieldSelector` of list and watch requests.
//!
//! Labels: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, joined
//! by commas (all must hold). Fields: `path=v`, `path==v`, `path!=v` on any dotted
//! path (the real server allows only a few paths per kind: `metadata.name`,
//! `metadata.namespace`, and e.g. `status.phase` for Pods); a missing field reads
//! as the empty string, as it does there.

use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
enum LabelOp {
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
}

#[derive(Clone, Debug, PartialEq)]
struct FieldRequirement {
    path: Vec<String>,
    equal: bool,
    value: String,
}

/// Label and field requirements, all of which an object must meet.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selector {
    labels: Vec<(String, LabelOp)>,
    fields: Vec<FieldRequirement>,
}

impl Selector {
    /// Parses the two query parameters; the error is the message of a 400.
    pub fn parse(
        label_selector: Option<&str>,
        field_selector: Option<&str>,
    ) -> Result<Self, String> {
        let labels = match label_selector {
            Some(s) => split_top_level(s)
                .into_iter()
                .map(parse_label_term)
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        let fields = match field_selector {
            Some(s) => split_top_level(s)
                .into_iter()
                .map(parse_field_term)
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        Ok(Self { labels, fields })
    }

    /// Whether `object` meets every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = object
            .pointer("/metadata/labels")
            .and_then(Value::as_object);
        let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        let labels_ok = self.labels.iter().all(|(key, op)| match op {
            LabelOp::Equals(v) => label(key) == Some(v.as_str()),
            LabelOp::NotEquals(v) => label(key) != Some(v.as_str()),
            LabelOp::In(vs) => label(key).is_some_and(|l| vs.iter().any(|v| v == l)),
            LabelOp::NotIn(vs) => label(key).is_none_or(|l| vs.iter().all(|v| v != l)),
            LabelOp::Exists => label(key).is_some(),
            LabelOp::DoesNotExist => label(key).is_none(),
        });
        labels_ok
            && self.fields.iter().all(|f| {
                let actual = field_text(object, &f.path);
                (actual == f.value) == f.equal
            })
    }
}

/// Splits on commas outside parentheses, dropping empty terms.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&s[start..]);
    terms
        .into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

fn checked_token(token: &str, what: &str, whole: &str) -> Result<String, String> {
    let token = token.trim();
    let bad = |c: char| c.is_whitespace() || "()=!,<>".contains(c);
    if (what == "key" && token.is_empty()) || token.contains(bad) {
        return Err(format!(
            "unable to parse requirement {whole:?}: invalid {what} {token:?}"
        ));
    }
    Ok(token.to_owned())
}

fn parse_label_term(term: &str) -> Result<(String, LabelOp), String> {
    if let Some(key) = term.strip_prefix('!') {
        return Ok((checked_token(key, "key", term)?, LabelOp::DoesNotExist));
    }
    if let Some(open) = term.find('(') {
        let head: Vec<&str> = term[..open].split_whitespace().collect();
        let list = term[open + 1..]
            .strip_suffix(')')
            .ok_or_else(|| format!("unable to parse requirement {term:?}: missing ')'"))?;
        let values = list
            .split(',')
            .map(|v| checked_token(v, "value", term))
            .collect::<Result<Vec<_>, _>>()?;
        return match head.as_slice() {
            [key, "in"] => Ok((checked_token(key, "key", term)?, LabelOp::In(values))),
            [key, "notin"] => Ok((checked_token(key, "key", term)?, LabelOp::NotIn(values))),
            _ => Err(format!(
                "unable to parse requirement {term:?}: expected 'in' or 'notin'"
            )),
        };
    }
    let (key, op) = if let Some((k, v)) = term.split_once("!=") {
        (k, LabelOp::NotEquals(checked_token(v, "value", term)?))
    } else if let Some((k, v)) = term.split_once("==") {
        (k, LabelOp::Equals(checked_token(v, "value", term)?))
    } else if let Some((k, v)) = term.split_once('=') {
        (k, LabelOp::Equals(checked_token(v, "value", term)?))
    } else {
        (term, LabelOp::Exists)
    };
    Ok((checked_token(key, "key", term)?, op))
}

fn parse_field_term(term: &str) -> Result<FieldRequirement, String> {
    let (path, equal, value) = if let Some((p, v)) = term.split_once("!=") {
        (p, false, v)
    } else if let Some((p, v)) = term.split_once("==") {
        (p, true, v)
    } else if let Some((p, v)) = term.split_once('=') {
        (p, true, v)
    } else {
        return Err(format!(
            "invalid field selector {term:?}: expected path=value or path!=value"
        ));
    };
    let path = checked_token(path, "key", term)?;
    Ok(FieldRequirement {
        path: path.split('.').map(str::to_owned).collect(),
        equal,
        value: value.trim().to_owned(),
    })
}

/// A field's value as the text a field selector compares with.
fn field_text(object: &Value, path: &[String]) -> String {
    let mut current = object;
    for part in path {
        match current.get(part) {
            Some(next) => current = next,
            None => return String::new(),
        }
    }
    match current {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn matches(labels: &str, object: &Value) -> bool {
        Selector::parse(Some(labels), None).unwrap().matches(object)
    }

    #[test]
    fn label_operators() {
        let o = json!({"metadata": {"name": "x", "labels": {"app": "web", "tier": "front"}}});
        assert!(matches("app=web", &o));
        assert!(matches("app==web,tier", &o));
        assert!(!matches("app!=web", &o));
        assert!(matches("env!=prod", &o));
        assert!(matches("tier in (front, back)", &o));
        assert!(!matches("tier notin (front,back)", &o));
        assert!(matches("env notin (prod)", &o));
        assert!(matches("!env", &o));
        assert!(!matches("!app", &o));
        assert!(matches("app in (web),!env,tier=front", &o));
        assert!(Selector::parse(Some("a in b"), None).is_err());
        assert!(Selector::parse(Some("a b=c"), None).is_err());
    }

    #[test]
    fn field_paths() {
        let o =
            json!({"metadata": {"name": "x", "namespace": "ns"}, "status": {"phase": "Running"}});
        let sel = |f: &str| Selector::parse(None, Some(f)).unwrap();
        assert!(sel("metadata.name=x,metadata.namespace==ns").matches(&o));
        assert!(!sel("metadata.name!=x").matches(&o));
        assert!(sel("status.phase=Running").matches(&o));
        assert!(sel("spec.nodeName=").matches(&o));
    }
}
