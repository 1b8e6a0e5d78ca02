//! The API reference pages in `docs/reference/`, generated from the CRDs'
//! openAPIV3Schema: one table row per field path with its type, default, allowed
//! values and the description the Rust doc comments gave it, so the reference says
//! exactly what the apiserver enforces.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Map, Value};

/// Folder, relative to the repository root, that holds the reference pages.
pub const DOCS_DIR: &str = "docs/reference";

const HEADER: &str = "<!-- Generated from the Rust types in crds/ by `cargo run -p anneal-crds --bin crdgen`.\n     Do not edit: change the types or their doc comments and run crdgen again. -->\n";

/// The reference page of one CRD: its file name (`finetunejob.md`) and Markdown.
pub fn page(crd: &CustomResourceDefinition) -> (String, String) {
    let names = &crd.spec.names;
    let version = &crd.spec.versions[0];
    let schema = version
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .map(|s| serde_json::to_value(s).expect("a schema serializes"))
        .expect("the CRD has a schema");
    let short_names = names.short_names.clone().unwrap_or_default().join("`, `");
    let mut text = format!(
        "{HEADER}# {kind} reference\n\n`apiVersion: {group}/{version}`, `kind: {kind}`, {scope}, \
         short name `{short_names}`, with a `status` subresource.\n\n",
        kind = names.kind,
        group = crd.spec.group,
        version = version.name,
        scope = crd.spec.scope.to_lowercase(),
    );
    if let Some(spec) = schema.pointer("/properties/spec/description") {
        text += &format!("{}\n\n", one_line(spec.as_str().unwrap_or_default()));
    }
    for message in rule_messages(&schema) {
        text += &format!("A rule on the whole object: {message}.\n\n");
    }
    let columns: Vec<String> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| format!("{} (`{}`)", c.name, c.json_path))
        .collect();
    text += &format!(
        "`kubectl get {}` shows {}.\n\n",
        names.plural,
        columns.join(", ")
    );
    text += "| Field | Type | Required | Default | Allowed | Description |\n";
    text += "|---|---|---|---|---|---|\n";
    let mut rows = Vec::new();
    collect_rows(&schema, "", &mut rows);
    for row in rows {
        text += &row;
        text.push('\n');
    }
    (format!("{}.md", names.kind.to_lowercase()), text)
}

/// One table row for each property under `schema`, depth first; `prefix` is the
/// path of `schema` itself (`spec.hyperparameters`), list items add `[]`.
fn collect_rows(schema: &Value, prefix: &str, rows: &mut Vec<String>) {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(properties) = schema["properties"].as_object() else {
        return;
    };
    for (name, child) in properties {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        rows.push(row(&path, child, required.contains(&name.as_str())));
        collect_rows(child, &path, rows);
        if let Some(items) = child.get("items") {
            collect_rows(items, &format!("{path}[]"), rows);
        }
    }
}

fn row(path: &str, schema: &Value, required: bool) -> String {
    let default = match &schema["default"] {
        Value::Null => String::new(),
        Value::String(text) => format!("`{text}`"),
        other => format!("`{other}`"),
    };
    let mut allowed = allowed(schema);
    allowed.extend(rule_messages(schema).iter().map(|m| format!("rule: {m}")));
    format!(
        "| `{path}` | {} | {} | {} | {} | {} |",
        type_name(schema),
        if required { "yes" } else { "" },
        cell(&default),
        cell(&allowed.join("; ")),
        cell(&one_line(
            schema["description"].as_str().unwrap_or_default()
        )),
    )
}

/// `string`, `integer (uint32)`, `[]string`, `map[string]string`, `int or string`.
fn type_name(schema: &Value) -> String {
    if schema.get("x-kubernetes-int-or-string").is_some() {
        return "int or string".to_owned();
    }
    let base = schema["type"].as_str().unwrap_or("any");
    match base {
        "array" => format!("[]{}", type_name(&schema["items"])),
        "object" if schema["additionalProperties"].is_object() => {
            format!("map[string]{}", type_name(&schema["additionalProperties"]))
        }
        _ => match schema["format"].as_str() {
            Some(format) => format!("{base} ({format})"),
            None => base.to_owned(),
        },
    }
}

/// What the schema admits: enum values, numeric range, lengths, item counts, pattern.
fn allowed(schema: &Value) -> Vec<String> {
    let mut allowed = Vec::new();
    if let Some(values) = schema["enum"].as_array() {
        let values: Vec<String> = values.iter().map(|v| format!("`{}`", plain(v))).collect();
        allowed.push(values.join(", "));
    }
    let exclusive = schema["exclusiveMinimum"] == Value::Bool(true);
    if let Some(range) = range(
        schema["minimum"].as_f64(),
        schema["maximum"].as_f64(),
        exclusive,
    ) {
        allowed.push(range);
    }
    let lengths = (schema["minLength"].as_f64(), schema["maxLength"].as_f64());
    if let Some(range) = range(lengths.0, lengths.1, false) {
        allowed.push(format!("length {range}"));
    }
    let items = (schema["minItems"].as_f64(), schema["maxItems"].as_f64());
    if let Some(range) = range(items.0, items.1, false) {
        allowed.push(format!("{range} items"));
    }
    if let Some(pattern) = schema["pattern"].as_str() {
        allowed.push(format!("pattern `{pattern}`"));
    }
    allowed
}

/// `1–64`, `0 < x ≤ 0.1`, `≥ 1`, `≤ 16`.
fn range(min: Option<f64>, max: Option<f64>, exclusive_min: bool) -> Option<String> {
    Some(match (min, max) {
        (Some(min), Some(max)) if exclusive_min => format!("{min} < x ≤ {max}"),
        (Some(min), Some(max)) => format!("{min}–{max}"),
        (Some(min), None) if exclusive_min => format!("> {min}"),
        (Some(min), None) => format!("≥ {min}"),
        (None, Some(max)) => format!("≤ {max}"),
        (None, None) => return None,
    })
}

/// The messages of the CEL rules on this node (`x-kubernetes-validations`), or the
/// rule itself where it has no message.
fn rule_messages(schema: &Value) -> Vec<String> {
    schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|rule| rule.as_object().and_then(message_of))
        .collect()
}

fn message_of(rule: &Map<String, Value>) -> Option<String> {
    let message = rule.get("message").and_then(Value::as_str);
    let text = message.or_else(|| rule.get("rule").and_then(Value::as_str))?;
    Some(text.to_owned())
}

fn plain(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A description's lines joined into one, as a table cell needs.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Text safe inside a Markdown table cell: `|` escaped everywhere (GitHub needs it
/// even inside code spans), `<` and `>` outside code spans so that Kubernetes'
/// `<key,value,effect>` is not taken for an HTML tag.
fn cell(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    let mut in_code = false;
    for c in text.chars() {
        match c {
            '`' => {
                in_code = !in_code;
                escaped.push(c);
            }
            '|' => escaped.push_str("\\|"),
            '<' if !in_code => escaped.push_str("&lt;"),
            '>' if !in_code => escaped.push_str("&gt;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ranges_read_as_people_write_them() {
        assert_eq!(range(Some(1.0), Some(64.0), false).unwrap(), "1–64");
        assert_eq!(range(Some(0.0), Some(0.1), true).unwrap(), "0 < x ≤ 0.1");
        assert_eq!(range(Some(1.0), None, false).unwrap(), "≥ 1");
        assert_eq!(range(None, Some(16.0), false).unwrap(), "≤ 16");
        assert_eq!(range(None, None, false), None);
    }

    #[test]
    fn types_name_lists_maps_and_formats() {
        let list = json!({"type": "array", "items": {"type": "string"}});
        assert_eq!(type_name(&list), "[]string");
        let map = json!({"type": "object", "additionalProperties": {"type": "string"}});
        assert_eq!(type_name(&map), "map[string]string");
        let count = json!({"type": "integer", "format": "uint32"});
        assert_eq!(type_name(&count), "integer (uint32)");
        let quantity = json!({"x-kubernetes-int-or-string": true});
        assert_eq!(type_name(&quantity), "int or string");
    }

    #[test]
    fn cells_escape_pipes_everywhere_and_angle_brackets_outside_code() {
        assert_eq!(cell("`a|b` <key> `<x>`"), "`a\\|b` &lt;key&gt; `<x>`");
    }

    #[test]
    fn rows_carry_required_default_allowed_and_rules() {
        let schema = json!({
            "required": ["method"],
            "properties": {"method": {
                "type": "string", "default": "sft", "enum": ["sft", "dpo"],
                "description": "The training\nobjective.",
                "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "immutable"}]
            }}
        });
        let mut rows = Vec::new();
        collect_rows(&schema, "spec", &mut rows);
        assert_eq!(
            rows,
            [
                "| `spec.method` | string | yes | `sft` | `sft`, `dpo`; rule: immutable | The training objective. |"
            ]
        );
    }
}
