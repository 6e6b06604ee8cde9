//! Render step, stack files: `$VAR` interpolation exactly as `docker stack deploy` does it.
//!
//! Supported: `$VAR`, `${VAR}`, `${VAR:-default}` (unset or empty), `${VAR-default}`
//! (unset), `${VAR:?error}` (unset or empty), `${VAR?error}` (unset), and `$$` for a
//! literal `$`. Only string values are interpolated, never keys. The variables
//! come from a lookup function so the logic stays pure.

use crate::render::yaml::{Node, Value};

/// Why interpolation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpolateError {
    /// The value itself is never shown (it may be a secret): the position is.
    #[error("invalid interpolation format at character {at} of the value: {why}")]
    Format { at: usize, why: String },
    #[error("required variable {name} is missing a value: {message}")]
    Required { name: String, message: String },
}

fn is_name_start(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_name_char(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

/// Interpolates one string. Unset variables without a default become empty,
/// and are reported through `unset` (docker warns about them too).
pub fn interpolate_str(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<String>,
) -> Result<String, InterpolateError> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    let format_err = |at: usize, why: &str| InterpolateError::Format {
        at: text[..at].chars().count() + 1,
        why: why.to_string(),
    };
    while let Some((at, c)) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        match chars.peek().map(|&(_, c)| c) {
            Some('$') => {
                chars.next();
                out.push('$');
            }
            Some('{') => {
                chars.next();
                let mut body = String::new();
                let mut closed = false;
                for (_, c) in chars.by_ref() {
                    if c == '}' {
                        closed = true;
                        break;
                    }
                    body.push(c);
                }
                if !closed {
                    return Err(format_err(at, "missing closing brace"));
                }
                out.push_str(&braced(&body, lookup, unset).map_err(|e| match e {
                    BracedError::Format(why) => format_err(at, &why),
                    BracedError::Required(err) => err,
                })?);
            }
            Some(c) if is_name_start(c) => {
                let mut name = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    if !is_name_char(c) {
                        break;
                    }
                    name.push(c);
                    chars.next();
                }
                match lookup(&name) {
                    Some(v) => out.push_str(&v),
                    None => unset.push(name),
                }
            }
            _ => {
                return Err(format_err(
                    at,
                    "a '$' must be followed by a variable name, '{' or '$' (write '$$' for a literal '$')",
                ))
            }
        }
    }
    Ok(out)
}

enum BracedError {
    Format(String),
    Required(InterpolateError),
}

fn braced(body: &str, lookup: &dyn Fn(&str) -> Option<String>, unset: &mut Vec<String>) -> Result<String, BracedError> {
    let end = body.find(|c: char| !is_name_char(c)).unwrap_or(body.len());
    let (name, rest) = body.split_at(end);
    if name.is_empty() || !name.starts_with(is_name_start) {
        return Err(BracedError::Format(
            "the text inside ${...} is not a variable name".to_string(),
        ));
    }
    let value = lookup(name);
    let set_nonempty = value.as_deref().is_some_and(|v| !v.is_empty());
    let (op, arg) = if let Some(a) = rest.strip_prefix(":-") {
        (":-", a)
    } else if let Some(a) = rest.strip_prefix(":?") {
        (":?", a)
    } else if let Some(a) = rest.strip_prefix('-') {
        ("-", a)
    } else if let Some(a) = rest.strip_prefix('?') {
        ("?", a)
    } else if rest.is_empty() {
        ("", "")
    } else {
        return Err(BracedError::Format(format!(
            "unexpected characters after the variable name {name} (use :-, -, :? or ?)"
        )));
    };
    let required = |message: &str| {
        BracedError::Required(InterpolateError::Required {
            name: name.to_string(),
            message: message.to_string(),
        })
    };
    Ok(match op {
        ":-" if !set_nonempty => arg.to_string(),
        "-" if value.is_none() => arg.to_string(),
        ":?" if !set_nonempty => return Err(required(arg)),
        "?" if value.is_none() => return Err(required(arg)),
        _ => match value {
            Some(v) => v,
            None => {
                unset.push(name.to_string());
                String::new()
            }
        },
    })
}

/// A failure with the path of the value it happened in.
#[derive(Debug)]
pub struct TreeError {
    pub path: Vec<String>,
    pub node: Node,
    pub error: InterpolateError,
}

/// Interpolates every string value of a YAML tree in place.
pub fn interpolate_tree(
    node: &mut Node,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<String>,
) -> Result<(), Box<TreeError>> {
    let mut path = Vec::new();
    walk(node, lookup, unset, &mut path)
}

fn walk(
    node: &mut Node,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<String>,
    path: &mut Vec<String>,
) -> Result<(), Box<TreeError>> {
    match &mut node.value {
        Value::String(s) => match interpolate_str(s, lookup, unset) {
            Ok(v) => *s = v,
            Err(error) => {
                return Err(Box::new(TreeError {
                    path: path.clone(),
                    node: node.clone(),
                    error,
                }))
            }
        },
        Value::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(i.to_string());
                walk(item, lookup, unset, path)?;
                path.pop();
            }
        }
        Value::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                path.push(k.name.clone());
                walk(v, lookup, unset, path)?;
                path.pop();
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("value".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn run(text: &str) -> Result<String, InterpolateError> {
        interpolate_str(text, &env, &mut Vec::new())
    }

    #[test]
    fn forms() {
        assert_eq!(run("a $SET b").unwrap(), "a value b");
        assert_eq!(run("${SET}x").unwrap(), "valuex");
        assert_eq!(run("$SET.x").unwrap(), "value.x");
        assert_eq!(run("${UNSET:-d}").unwrap(), "d");
        assert_eq!(run("${EMPTY:-d}").unwrap(), "d");
        assert_eq!(run("${SET:-d}").unwrap(), "value");
        assert_eq!(run("${UNSET-d}").unwrap(), "d");
        assert_eq!(run("${EMPTY-d}").unwrap(), "");
        assert_eq!(run("$$SET $${x}").unwrap(), "$SET ${x}");
        assert_eq!(run("${UNSET:-a b:c}").unwrap(), "a b:c");
        assert_eq!(run("no dollars").unwrap(), "no dollars");
    }

    #[test]
    fn required() {
        assert!(
            matches!(run("${UNSET:?need it}"), Err(InterpolateError::Required { ref message, .. }) if message == "need it")
        );
        assert!(run("${EMPTY:?e}").is_err());
        assert_eq!(run("${EMPTY?e}").unwrap(), "");
        assert!(run("${UNSET?e}").is_err());
        assert_eq!(run("${SET:?e}").unwrap(), "value");
    }

    #[test]
    fn unset_is_empty_and_reported() {
        let mut unset = Vec::new();
        assert_eq!(interpolate_str("a${NOPE}b$ALSO", &env, &mut unset).unwrap(), "ab");
        assert_eq!(unset, vec!["NOPE".to_string(), "ALSO".to_string()]);
    }

    #[test]
    fn bad_formats() {
        for bad in [
            "${",
            "${SET",
            "${}",
            "${1A}",
            "$ x",
            "${SET:x}",
            "${SET!}",
            "trailing $",
        ] {
            assert!(matches!(run(bad), Err(InterpolateError::Format { .. })), "{bad}");
        }
    }

    #[test]
    fn tree_keeps_keys_and_reports_path() {
        let mut node = crate::render::yaml::parse("s.yml", "$KEY:\n  - ok $SET\n  - bad ${\n").unwrap();
        let err = interpolate_tree(&mut node, &env, &mut Vec::new()).unwrap_err();
        assert_eq!(err.path, vec!["$KEY".to_string(), "1".to_string()]);
        assert_eq!(err.node.pos.line, 3);
    }
}
