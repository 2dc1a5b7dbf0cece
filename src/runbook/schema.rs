//! The JSON Schema of the format, generated from the model (schemars), for editors:
//! yaml-language-server reads it through the `# yaml-language-server: $schema=...`
//! line every runbook starts with, and offers completion, hovers (the model's doc
//! comments) and inline errors. The checked-in `schemas/runbook.schema.json` must
//! equal [`schema_json`]; a test fails when it is stale.

use serde_json::{Value, json};

use super::model::Runbook;
use super::verbs::VERBS;

/// The schema as JSON.
pub fn schema() -> Value {
    // Draft 7: what yaml-language-server supports fully.
    let generated = schemars::generate::SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<Runbook>();
    let mut v = generated.to_value();
    // An absent key is how YAML says "not set"; the parser rejects `key: null`, so
    // the schema should too (schemars allows null for every Option).
    strip_null(&mut v);
    if let Some(root) = v.as_object_mut() {
        root.insert(
            "title".into(),
            json!("runbook: an incident runbook (format version 1)"),
        );
    }
    // What serde attributes cannot say: a step has one kind key, a kube operation
    // one verb. Editors then flag a step with no title key as it is typed.
    if let Some(step) = v
        .pointer_mut("/definitions/Step")
        .and_then(Value::as_object_mut)
    {
        step.insert(
            "anyOf".into(),
            json!([
                { "required": ["check"] },
                { "required": ["action"] },
                { "required": ["verify"], "properties": { "verify": { "type": "string" } } },
                { "required": ["manual"] }
            ]),
        );
    }
    // The verbs come from the one table of verbs (`verbs.rs`), not from the
    // model's fields: each is a string property with its summary as hover text.
    if let Some(kube) = v
        .pointer_mut("/definitions/KubeOp")
        .and_then(Value::as_object_mut)
    {
        if let Some(props) = kube.get_mut("properties").and_then(Value::as_object_mut) {
            for verb in VERBS {
                props.insert(
                    verb.name.into(),
                    json!({ "description": verb.summary, "type": "string" }),
                );
            }
        }
        let any: Vec<Value> = VERBS
            .iter()
            .map(|verb| json!({ "required": [verb.name] }))
            .collect();
        kube.insert("oneOf".into(), Value::Array(any));
    }
    v
}

fn strip_null(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    map.insert("type".into(), only);
                }
            }
            for key in ["anyOf", "oneOf"] {
                if let Some(Value::Array(alts)) = map.get_mut(key) {
                    alts.retain(|a| a != &json!({ "type": "null" }));
                    if alts.len() == 1 && key == "anyOf" {
                        let only = alts.remove(0);
                        map.remove(key);
                        if let Value::Object(inner) = only {
                            for (k, val) in inner {
                                map.entry(k).or_insert(val);
                            }
                        }
                    }
                }
            }
            map.values_mut().for_each(strip_null);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_null),
        _ => {}
    }
}

/// The schema as the pretty-printed text `runbook schema` prints and
/// `schemas/runbook.schema.json` holds.
pub fn schema_json() -> String {
    let mut s = serde_json::to_string_pretty(&schema())
        .expect("invariant: a serde_json::Value always serializes");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_in_schema_is_up_to_date() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/runbook.schema.json");
        let checked_in = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            checked_in == schema_json(),
            "schemas/runbook.schema.json is stale: regenerate it with\n    cargo run -- schema > schemas/runbook.schema.json"
        );
    }

    #[test]
    fn schema_describes_keys_and_the_verify_union() {
        let s = schema();
        let step = &s["definitions"]["Step"];
        assert_eq!(step["additionalProperties"], json!(false));
        assert!(step["properties"]["for_each"]["description"].is_string());
        assert_eq!(
            step["properties"]["verify"]["$ref"],
            "#/definitions/VerifyField"
        );
        let verify = serde_json::to_string(&s["definitions"]["VerifyField"]).unwrap();
        assert!(
            verify.contains("string") && verify.contains("Verification"),
            "{verify}"
        );
        for key in ["shell", "http", "prometheus", "kube"] {
            assert!(step["properties"][key].is_object(), "{key}");
        }
        assert!(s["definitions"]["KubeOp"]["properties"]["where"].is_object());
        let text = schema_json();
        assert!(
            !text.contains("\"null\""),
            "optional keys must not accept null"
        );
    }
}
