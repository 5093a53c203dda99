//! JSON Patch (RFC 6902) `add` and `replace` on raw JSON.

use serde_json::Value;

const READ_ONLY: &[&str] = &["id", "eTag"];

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// Applies one operation; `replace` of a missing object member adds it (the resource is a typed
/// model on Microsoft's side, where every known member exists even when the JSON omits it).
pub(super) fn apply(document: &mut Value, op: &Value) -> Result<(), String> {
    let kind = op
        .get("op")
        .and_then(Value::as_str)
        .ok_or("`op` is missing")?;
    if !matches!(kind, "add" | "replace") {
        return Err(format!(
            "operation '{kind}' is not supported (only add and replace)"
        ));
    }
    let path = op
        .get("path")
        .and_then(Value::as_str)
        .ok_or("`path` is missing")?;
    let value = op.get("value").ok_or("`value` is missing")?.clone();
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!(
            "path '{path}' must start with '/' (the whole referral cannot be replaced)"
        ));
    };
    let tokens: Vec<String> = rest.split('/').map(unescape).collect();
    if READ_ONLY.contains(&tokens[0].as_str()) {
        return Err(format!("'/{}' is read-only", tokens[0]));
    }
    let (last, parents) = tokens.split_last().ok_or("empty path")?;
    let mut target = document;
    for token in parents {
        target = match target {
            Value::Object(object) => object.get_mut(token),
            Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| format!("path '{path}' does not exist"))?;
    }
    match target {
        Value::Object(object) => {
            object.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(items) => {
            if kind == "add" && last == "-" {
                items.push(value);
                return Ok(());
            }
            let index = last
                .parse::<usize>()
                .map_err(|_| format!("'{last}' is not an array index"))?;
            match kind {
                "add" if index <= items.len() => items.insert(index, value),
                "replace" if index < items.len() => items[index] = value,
                _ => return Err(format!("index {index} is out of bounds")),
            }
            Ok(())
        }
        _ => Err(format!("the parent of '{path}' is not an object or array")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn when_paths_are_nested_should_set_them() {
        let mut doc =
            json!({"status": "New", "details": {"dealValue": 1}, "target": [{"id": "a"}]});
        apply(
            &mut doc,
            &json!({"op": "replace", "path": "/details/dealValue", "value": 5}),
        )
        .unwrap();
        apply(
            &mut doc,
            &json!({"op": "add", "path": "/target/-", "value": {"id": "b"}}),
        )
        .unwrap();
        apply(
            &mut doc,
            &json!({"op": "replace", "path": "/target/0/id", "value": "z"}),
        )
        .unwrap();
        apply(
            &mut doc,
            &json!({"op": "add", "path": "/a~1b", "value": true}),
        )
        .unwrap();
        assert_eq!(
            doc,
            json!({"status": "New", "details": {"dealValue": 5}, "target": [{"id": "z"}, {"id": "b"}], "a/b": true})
        );
    }

    #[test]
    fn when_operation_is_invalid_should_refuse() {
        let mut doc = json!({"id": "1", "details": null});
        for op in [
            json!({"op": "remove", "path": "/details"}),
            json!({"op": "replace", "path": "/id", "value": "2"}),
            json!({"op": "replace", "path": "/details/dealValue", "value": 1}),
            json!({"op": "replace", "path": "", "value": {}}),
            json!({"op": "add", "path": "/x"}),
        ] {
            assert!(apply(&mut doc, &op).is_err(), "{op}");
        }
    }
}
