// Each test binary uses a different part of this support code.
#![allow(dead_code)]

//! Test support: the apiserver's admission of a custom resource, minus the server.
//!
//! Creation runs the CRD's openAPIV3Schema (JSON-schema draft 4, whose boolean
//! `exclusiveMinimum` matches OpenAPI 3.0) with unknown fields refused, as kubectl's
//! strict field validation does; defaults are applied by a serde round trip through
//! the Rust type (the schema's defaults are generated from the same serde defaults);
//! then the CEL rules run through kube's client-side evaluator. Updates run the
//! CEL transition rules against the old object.
//!
//! Not emulated: pruning (unknown fields are refused instead), CEL cost limits,
//! `x-kubernetes-int-or-string` coercion, and defaulting inside lists.

use std::path::{Path, PathBuf};

use anneal_crds::manifest::{parse_finetunejob, parse_modeldeployment};
use anneal_crds::{FineTuneJob, ModelDeployment};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

pub struct ApiServerRules {
    schema: jsonschema::Validator,
    cel_schema: Value,
    defaulted: fn(&Value) -> Result<Value, String>,
}

fn defaulted<T: Serialize + DeserializeOwned>(value: &Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    Ok(serde_json::to_value(typed).expect("serializes"))
}

impl ApiServerRules {
    pub fn for_crd<K: CustomResourceExt + Serialize + DeserializeOwned>() -> Self {
        let schema = open_api_schema(&K::crd());
        let mut strict = schema.clone();
        // Every object has these; the apiserver checks them before the CRD schema.
        let root = strict["properties"].as_object_mut().unwrap();
        root.insert("apiVersion".into(), serde_json::json!({"type": "string"}));
        root.insert("kind".into(), serde_json::json!({"type": "string"}));
        root.insert(
            "metadata".into(),
            serde_json::json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        );
        refuse_unknown_fields(&mut strict);
        Self {
            schema: jsonschema::draft4::new(&strict).expect("the CRD schema compiles"),
            cel_schema: schema,
            defaulted: defaulted::<K>,
        }
    }

    /// Errors an apiserver would answer a create with; empty when it is admitted.
    pub fn create(&self, object: &Value) -> Vec<String> {
        let schema_errors: Vec<String> = self
            .schema
            .iter_errors(object)
            .map(|e| format!("{}: {}", e.instance_path(), e))
            .collect();
        if !schema_errors.is_empty() {
            return schema_errors;
        }
        let object = match (self.defaulted)(object) {
            Ok(object) => object,
            Err(err) => return vec![format!("does not decode: {err}")],
        };
        self.cel(&object, None)
    }

    /// Errors an apiserver would answer an update from `old` to `new` with.
    pub fn update(&self, old: &Value, new: &Value) -> Vec<String> {
        let schema_errors = self.create(new);
        if !schema_errors.is_empty() {
            return schema_errors;
        }
        let old = (self.defaulted)(old).expect("old object decodes");
        let new = (self.defaulted)(new).expect("new object decodes");
        self.cel(&new, Some(&old))
    }

    fn cel(&self, object: &Value, old: Option<&Value>) -> Vec<String> {
        match kube::core::cel::Validator::new().validate(&self.cel_schema, object, old) {
            Ok(()) => vec![],
            Err(errors) => errors.into_vec().iter().map(ToString::to_string).collect(),
        }
    }
}

/// An Anneal manifest's kind and every problem with it: the apiserver's admission
/// (schema and CEL rules), then the local parsing and validation `trainer` runs.
/// A manifest of another kind is one problem.
pub fn admit_manifest(text: &str) -> (String, Vec<String>) {
    let value: Value = match serde_yaml_ng::from_str(text) {
        Ok(value) => value,
        Err(err) => return (String::new(), vec![format!("not YAML: {err}")]),
    };
    let kind = value["kind"].as_str().unwrap_or_default().to_owned();
    let (mut problems, local) = match kind.as_str() {
        "FineTuneJob" => (
            ApiServerRules::for_crd::<FineTuneJob>().create(&value),
            parse_finetunejob(text).err().map(|e| e.to_string()),
        ),
        "ModelDeployment" => (
            ApiServerRules::for_crd::<ModelDeployment>().create(&value),
            parse_modeldeployment(text).err().map(|e| e.to_string()),
        ),
        "ModelEvaluation" => (
            ApiServerRules::for_crd::<anneal_crds::modelevaluation::ModelEvaluation>()
                .create(&value),
            anneal_crds::manifest::parse_modelevaluation(text)
                .err()
                .map(|e| e.to_string()),
        ),
        other => (vec![format!("unexpected kind {other:?}")], None),
    };
    problems.extend(local.map(|e| format!("local validation: {e}")));
    (kind, problems)
}

/// Files under `root`, at any depth, whose extension is one of `extensions`, sorted.
pub fn files_under(root: &Path, extensions: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path
                .extension()
                .is_some_and(|e| extensions.iter().any(|x| e == *x))
            {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The openAPIV3Schema of a CRD's only version, as JSON.
pub fn open_api_schema(crd: &CustomResourceDefinition) -> Value {
    let version = &crd.spec.versions[0];
    let schema = version
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref());
    serde_json::to_value(schema.expect("the CRD has a schema")).unwrap()
}

/// `additionalProperties: false` wherever the schema lists properties and does not
/// ask to preserve unknown fields.
fn refuse_unknown_fields(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let preserves =
                map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
            if map.contains_key("properties")
                && !preserves
                && !map.contains_key("additionalProperties")
            {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            for child in map.values_mut() {
                refuse_unknown_fields(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(refuse_unknown_fields),
        _ => {}
    }
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(mut target: Value, patch: Value) -> Value {
    match patch {
        Value::Object(patch) => {
            if !target.is_object() {
                target = Value::Object(Map::new());
            }
            let map = target.as_object_mut().unwrap();
            for (key, value) in patch {
                if value.is_null() {
                    map.remove(&key);
                } else {
                    let current = map.remove(&key).unwrap_or(Value::Null);
                    map.insert(key, merge_patch(current, value));
                }
            }
            target
        }
        patch => patch,
    }
}
