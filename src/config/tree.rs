//! Configuration as a generic value tree: parsing a file, presets underneath, environment
//! overrides on top, then one typed deserialization.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::error::ConfigFileError;
use super::spec::Preset;

/// The layer tables a stack may declare, in a file's spelling.
pub(crate) const LAYERS: [&str; 5] = ["rate_limit", "deadline", "bulkhead", "breaker", "retry"];

/// The prefix of environment overrides.
pub(crate) const ENV_PREFIX: &str = "PALISADE__";

/// The file formats read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Toml,
    Yaml,
}

/// Parses `text` straight into `T` with the format's own deserializer, so type errors
/// and unknown fields carry the path and the line.
pub(crate) fn typed_from_text<T: DeserializeOwned>(
    format: Format,
    text: &str,
) -> Result<T, ConfigFileError> {
    match format {
        Format::Toml => {
            let de = toml::Deserializer::parse(text).map_err(|e| toml_error(text, &e, ""))?;
            serde_path_to_error::deserialize(de).map_err(|e| {
                let path = path_string(e.path());
                toml_error(text, e.inner(), &path)
            })
        }
        Format::Yaml => {
            let de = serde_norway::Deserializer::from_str(text);
            serde_path_to_error::deserialize(de).map_err(|e| {
                let path = path_string(e.path());
                yaml_error(e.inner(), &path)
            })
        }
    }
}

/// Parses `text` into a generic tree (syntax errors only).
pub(crate) fn tree_from_text(format: Format, text: &str) -> Result<Value, ConfigFileError> {
    let value = match format {
        Format::Toml => toml::from_str::<Value>(text).map_err(|e| toml_error(text, &e, ""))?,
        Format::Yaml => serde_norway::from_str::<Value>(text).map_err(|e| yaml_error(&e, ""))?,
    };
    Ok(match value {
        // An empty YAML document.
        Value::Null => Value::Object(Map::new()),
        other => other,
    })
}

/// Deserializes the merged tree into `T`; the error names the path, and the variable
/// when an environment override set the bad value.
pub(crate) fn typed_from_tree<T: DeserializeOwned>(
    tree: Value,
    env_paths: &[(String, String)],
) -> Result<T, ConfigFileError> {
    serde_path_to_error::deserialize(tree).map_err(|e| {
        let path = path_string(e.path());
        let err = with_unknown_field(&path, &e.inner().to_string());
        annotate_env(err, env_paths)
    })
}

/// Adds the variable that set the value at `err`'s path, if one did.
pub(crate) fn annotate_env(
    err: ConfigFileError,
    env_paths: &[(String, String)],
) -> ConfigFileError {
    let path = err.path().to_owned();
    let hit = env_paths.iter().find(|(p, _)| {
        path == *p
            || path.starts_with(&format!("{p}."))
            || path.starts_with(&format!("{p}["))
            || (!path.is_empty() && p.starts_with(&format!("{path}.")))
    });
    match hit {
        Some((_, var)) => err.with_env_var(var),
        None => err,
    }
}

/// serde_path_to_error names the table holding an unknown field; name the field itself.
fn with_unknown_field(path: &str, message: &str) -> ConfigFileError {
    if message.contains("string \"-") && message.ends_with("expected a duration") {
        return ConfigFileError::new(path, format!("{message}: a duration cannot be negative"));
    }
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some(field) = rest.split('`').next()
    {
        let full = if path.is_empty() {
            field.to_owned()
        } else if path.ends_with(&format!(".{field}")) || path == field {
            path.to_owned()
        } else {
            format!("{path}.{field}")
        };
        return ConfigFileError::new(full, message);
    }
    ConfigFileError::new(path, message)
}

fn toml_error(text: &str, e: &toml::de::Error, path: &str) -> ConfigFileError {
    let line = e
        .span()
        .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
    with_unknown_field(path, e.message().trim_end()).with_line(line)
}

fn yaml_error(e: &serde_norway::Error, path: &str) -> ConfigFileError {
    let line = e.location().map(|l| l.line());
    let mut message = e.to_string();
    // The YAML crate appends its own position and path; we report them apart.
    if let Some(at) = message.find(" at line ") {
        message.truncate(at);
    }
    if let Some(rest) = message.strip_prefix(&format!("{path}: ")) {
        message = rest.to_owned();
    }
    with_unknown_field(path, &message).with_line(line)
}

/// `stacks.payments.deadline.routes[0].budget`.
fn path_string(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// Lays `over` on `base`: tables merge key by key, anything else is replaced.
pub(crate) fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Applies `PALISADE__A__B=value` variables to `tree`; returns the dotted paths they
/// set with the variable's name, for error messages. Other variables are ignored.
pub(crate) fn apply_env<I, K, V>(
    tree: &mut Value,
    vars: I,
) -> Result<Vec<(String, String)>, ConfigFileError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut set = Vec::new();
    for (key, value) in vars {
        let key = key.as_ref();
        let Some(rest) = key.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let segments: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
        let path = segments.join(".");
        if segments.iter().any(String::is_empty) {
            return Err(ConfigFileError::new(
                path,
                "empty segment in the variable's name (segments are separated by `__`)",
            )
            .with_env_var(key));
        }
        check_env_path(tree, &segments).map_err(|e| e.with_env_var(key))?;
        let Value::Object(mut node) = std::mem::take(tree) else {
            return Err(ConfigFileError::new("", "the configuration is not a table"));
        };
        let result = insert(&mut node, &segments, env_value(value.as_ref()));
        *tree = Value::Object(node);
        result.map_err(|p| ConfigFileError::new(p, "is not a table").with_env_var(key))?;
        set.push((path, key.to_owned()));
    }
    Ok(set)
}

/// The first segments must name something that exists: `preset`, or a declared stack
/// and one of its layers.
fn check_env_path(tree: &Value, segments: &[String]) -> Result<(), ConfigFileError> {
    match segments[0].as_str() {
        "preset" if segments.len() == 1 => Ok(()),
        "stacks" => {
            let Some(stack) = segments.get(1) else {
                return Err(ConfigFileError::new(
                    "stacks",
                    "set a field of a stack, not the whole table",
                ));
            };
            if tree.get("stacks").and_then(|s| s.get(stack)).is_none() {
                return Err(ConfigFileError::new(
                    format!("stacks.{stack}"),
                    "no such stack in the file (environment overrides change declared stacks)",
                ));
            }
            match segments.get(2).map(String::as_str) {
                None => Err(ConfigFileError::new(
                    format!("stacks.{stack}"),
                    "set a field of the stack, not the whole stack",
                )),
                Some("preset") if segments.len() == 3 => Ok(()),
                Some(layer) if LAYERS.contains(&layer) && segments.len() > 3 => Ok(()),
                Some(other) => Err(ConfigFileError::new(
                    segments[..3].join("."),
                    format!(
                        "unknown field `{other}`, expected `preset` or a field of one of `{}`",
                        LAYERS.join("`, `")
                    ),
                )),
            }
        }
        other => Err(ConfigFileError::new(
            segments.join("."),
            format!("unknown field `{other}`, expected `preset` or `stacks`"),
        )),
    }
}

fn insert(node: &mut Map<String, Value>, segments: &[String], value: Value) -> Result<(), String> {
    let (last, parents) = segments.split_last().ok_or_else(String::new)?;
    let mut here = node;
    for (i, seg) in parents.iter().enumerate() {
        let slot = here
            .entry(seg.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        here = match slot {
            Value::Object(m) => m,
            _ => return Err(segments[..=i].join(".")),
        };
    }
    here.insert(last.clone(), value);
    Ok(())
}

/// An environment value as the tree needs it: `true`/`false` as booleans, numbers as
/// numbers, `null` as nothing, anything else (`"2s"`) as a string.
fn env_value(raw: &str) -> Value {
    let s = raw.trim();
    match s {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        "null" => return Value::Null,
        _ => {}
    }
    if let Ok(n) = s.parse::<u64>() {
        return Value::from(n);
    }
    if let Ok(n) = s.parse::<i64>() {
        return Value::from(n);
    }
    if let Ok(x) = s.parse::<f64>()
        && x.is_finite()
    {
        return Value::from(x);
    }
    Value::String(raw.to_owned())
}

/// The preset named at `path` in the tree, if any.
fn preset_at(value: Option<&Value>, path: &str) -> Result<Option<Preset>, ConfigFileError> {
    match value {
        Some(Value::String(s)) => s
            .parse::<Preset>()
            .map(Some)
            .map_err(|e| ConfigFileError::new(path, e.to_string())),
        // Null or a wrong type: the typed pass reports it.
        _ => Ok(None),
    }
}

/// Lays each stack's declared layer tables on its preset's tables; gives retry tables
/// the stack's name unless they have one.
pub(crate) fn apply_presets(
    tree: &mut Value,
    env_paths: &[(String, String)],
) -> Result<(), ConfigFileError> {
    let top = preset_at(tree.get("preset"), "preset").map_err(|e| annotate_env(e, env_paths))?;
    let Some(Value::Object(stacks)) = tree.get_mut("stacks") else {
        return Ok(());
    };
    for (name, stack) in stacks.iter_mut() {
        let Value::Object(stack) = stack else {
            continue;
        };
        let path = format!("stacks.{name}.preset");
        let own = preset_at(stack.get("preset"), &path).map_err(|e| annotate_env(e, env_paths))?;
        let preset = own.or(top);
        let base = match preset {
            Some(p) => super::presets::tree(p)?,
            None => Value::Object(Map::new()),
        };
        for layer in LAYERS {
            let Some(declared) = stack.get_mut(layer) else {
                continue;
            };
            // `breaker:` with nothing after it (YAML) declares the layer too.
            if declared.is_null() {
                *declared = Value::Object(Map::new());
            }
            if let Value::Object(table) = declared
                && layer == "retry"
                && !table.contains_key("name")
            {
                table.insert("name".to_owned(), Value::String(name.clone()));
            }
            if let Some(preset_table) = base.get(layer) {
                let mut merged = preset_table.clone();
                merge(&mut merged, std::mem::take(declared));
                *declared = merged;
            }
        }
    }
    Ok(())
}
