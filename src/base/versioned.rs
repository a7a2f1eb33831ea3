//! Versioned files: every file cis writes for itself (ledger, simulated account, run
//! record, model) carries a `format` name and a `version`, checked before anything is read.

/// Checks a state file's `format` and `version` fields; the message says what to do.
pub fn check_header(value: &serde_json::Value, format: &str, version: u32) -> Result<(), String> {
    match value.get("format").and_then(|f| f.as_str()) {
        Some(f) if f == format => {}
        Some(other) => return Err(format!("is a '{other}' file, not a '{format}' file; it was left as it is")),
        None => return Err(format!("has no 'format' field, so it is not a '{format}' file; it was left as it is")),
    }
    match value.get("version").and_then(|v| v.as_u64()) {
        Some(v) if v == version as u64 => Ok(()),
        Some(v) if v > version as u64 => Err(format!(
            "was written by a newer cis ({format} version {v}; this cis reads version {version}): upgrade cis to use it; it was left as it is"
        )),
        Some(v) => Err(format!("is {format} version {v}, which this cis (version {version}) cannot read; it was left as it is")),
        None => Err("has no 'version' field; it was left as it is".into()),
    }
}
