//! The one JSON convention of every `--json` output and every record (docs/json.md): a
//! `schema` key naming the kind and its major version, times as `<name>` (RFC 3339, UTC,
//! milliseconds) beside `<name>_unix_ms`, sizes as `*_bytes`, outcomes under `outcome`. These
//! helpers keep the pieces that are easy to get wrong in one place; the schemas themselves live
//! in docs/schema/ and tests/tests/json_schemas.rs checks real outputs against them.

use serde_json::{Map, Value};
use sluice_common::exit::CommandError;

/// `sluice.<kind>/1`: the value of the `schema` key of an output of this kind.
pub fn schema_id(kind: &str) -> String {
    format!("sluice.{kind}/1")
}

/// A JSON object that starts with its `schema` key.
pub fn object(kind: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("schema".into(), schema_id(kind).into());
    m
}

/// Sets `<name>` (RFC 3339 with milliseconds) and `<name>_unix_ms` on `map`.
pub fn set_time(map: &mut Map<String, Value>, name: &str, unix_ms: u64) {
    map.insert(name.into(), crate::time::rfc3339_ms(unix_ms).into());
    map.insert(format!("{name}_unix_ms"), unix_ms.into());
}

/// [`object`] with `time`/`time_unix_ms` set to now: the head of a one-shot report.
pub fn report(kind: &str) -> Map<String, Value> {
    let mut m = object(kind);
    set_time(&mut m, "time", crate::time::now_unix_ms());
    m
}

/// `value` (an object) with `schema` and `time`/`time_unix_ms` (now) added: what a command
/// prints for `--json`. A value that is not an object is returned unchanged.
pub fn stamp(kind: &str, value: Value) -> Value {
    match value {
        Value::Object(fields) => {
            let mut m = report(kind);
            m.extend(fields);
            Value::Object(m)
        }
        other => other,
    }
}

/// Sets `<name>`/`<name>_unix_ms` from whole unix seconds (bundle headers carry seconds), or
/// both `null` for `None`.
pub fn set_time_secs(map: &mut Map<String, Value>, name: &str, unix_secs: Option<u64>) {
    match unix_secs {
        Some(s) => set_time(map, name, s.saturating_mul(1000)),
        None => {
            map.insert(name.into(), Value::Null);
            map.insert(format!("{name}_unix_ms"), Value::Null);
        }
    }
}

/// A fatal error as one JSON object (`sluice.error/1`), what `--log-format json` prints on
/// stderr instead of the `error:`/`help:` lines, so a SIEM never has to parse text.
pub fn error_object(e: &CommandError) -> Value {
    let mut m = report("error");
    m.insert("level".into(), "ERROR".into());
    m.insert("message".into(), e.message.clone().into());
    m.insert(
        "help".into(),
        e.remediation.clone().map_or(Value::Null, Value::from),
    );
    m.insert("exit_code".into(), e.code.code().into());
    m.insert("exit_name".into(), e.code.name().into());
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use sluice_common::exit::{CommandError, Exit};

    #[test]
    fn error_object_carries_code_message_help_and_time() {
        let e = CommandError::new(Exit::Storage, "disk full").help("free some space");
        let v = super::error_object(&e);
        assert_eq!(v["schema"], "sluice.error/1");
        assert_eq!(v["exit_code"], 8);
        assert_eq!(v["exit_name"], "STORAGE");
        assert_eq!(v["message"], "disk full");
        assert_eq!(v["help"], "free some space");
        let ms = v["time_unix_ms"].as_u64().expect("time_unix_ms");
        assert_eq!(v["time"], crate::time::rfc3339_ms(ms));
    }
}
