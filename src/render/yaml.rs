//! Input step: YAML text to a tree that remembers where every node came from.
//!
//! Everything swarmlog reads (values files, chart metadata, stack files) goes
//! through [`parse`], so every later error can name the file, line and column.
//! Size, depth and alias limits refuse oversized files and alias bombs before
//! any work is done.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::{Budget, DuplicateKeyPolicy, Options, Spanned};

/// Largest YAML input accepted, in bytes.
pub const MAX_INPUT_BYTES: usize = 4 * 1024 * 1024;

pub use crate::diag::Pos;

/// A YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

/// The value of a YAML node. Mappings keep their source order.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

/// A mapping key with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub pos: Pos,
    pub name: String,
}

/// Why a YAML document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    #[error("{file}: file is {size} bytes, larger than the limit of {limit} bytes")]
    TooLarge { file: String, size: usize, limit: usize },
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
}

impl Value {
    /// A short name of the value's type, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::String(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

impl Node {
    /// The entry `key` of a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The position of the deepest node along `path` (mapping keys or list
    /// indices), falling back to the last node found.
    pub fn locate(&self, path: &[String]) -> Pos {
        let mut node = self;
        for part in path {
            let next = match &node.value {
                Value::Map(entries) => entries.iter().find(|(k, _)| &k.name == part).map(|(_, v)| v),
                // A list can stand for a mapping (`networks: [a, b]`): find the item by its text.
                Value::Seq(items) => part
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| items.get(i))
                    .or_else(|| items.iter().find(|n| matches!(&n.value, Value::String(s) if s == part))),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node.pos
    }

    /// Plain JSON, losing positions.
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::Seq(items) => serde_json::Value::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => {
                serde_json::Value::Object(entries.iter().map(|(k, v)| (k.name.clone(), v.to_json())).collect())
            }
        }
    }
}

fn options() -> Options {
    Options {
        budget: Some(Budget {
            max_reader_input_bytes: Some(MAX_INPUT_BYTES),
            max_events: 200_000,
            max_aliases: 1_000,
            max_anchors: 1_000,
            max_depth: 64,
            max_nodes: 100_000,
            ..Budget::default()
        }),
        duplicate_keys: DuplicateKeyPolicy::Error,
        legacy_octal_numbers: true,
        // Only `true` and `false` are booleans: YAML 1.1's `n`, `no`, `on` and
        // `off` silently turning into booleans is a classic trap.
        strict_booleans: true,
        with_snippet: false,
        ..Options::default()
    }
}

/// Parses one YAML document. `file` names the input in errors. An empty
/// document is [`Value::Null`].
pub fn parse(file: &str, text: &str) -> Result<Node, YamlError> {
    if text.len() > MAX_INPUT_BYTES {
        return Err(YamlError::TooLarge {
            file: file.to_string(),
            size: text.len(),
            limit: MAX_INPUT_BYTES,
        });
    }
    if text.trim().is_empty()
        || text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Ok(Node {
            pos: Pos { line: 1, column: 1 },
            value: Value::Null,
        });
    }
    let spanned: Spanned<RawValue> =
        serde_saphyr::from_str_with_options(text, options()).map_err(|e| YamlError::Syntax {
            file: file.to_string(),
            message: e.to_string(),
        })?;
    Ok(into_node(spanned, text))
}

/// Private deserialization shape: values whose children carry spans.
enum RawValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Seq(Vec<Spanned<RawValue>>),
    Map(Vec<(Spanned<String>, Spanned<RawValue>)>),
}

fn pos_of(loc: &serde_saphyr::Location) -> Pos {
    Pos {
        line: loc.line(),
        column: loc.column(),
    }
}

fn into_node(raw: Spanned<RawValue>, text: &str) -> Node {
    let pos = pos_of(&raw.referenced);
    let value = match raw.value {
        RawValue::Null => Value::Null,
        RawValue::Bool(b) => Value::Bool(b),
        RawValue::Int(i) => legacy_octal(text, pos).unwrap_or(Value::Int(i)),
        RawValue::Float(f) => Value::Float(f),
        RawValue::String(s) => Value::String(s),
        RawValue::Seq(items) => Value::Seq(items.into_iter().map(|i| into_node(i, text)).collect()),
        RawValue::Map(entries) => Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| {
                    (
                        Key {
                            pos: pos_of(&k.referenced),
                            name: k.value,
                        },
                        into_node(v, text),
                    )
                })
                .collect(),
        ),
    };
    Node { pos, value }
}

/// YAML 1.1 (the dialect `docker stack deploy` reads) takes `0440` as octal;
/// YAML 1.2 takes it as decimal. Stack files follow 1.1, so a plain integer
/// written with a leading zero is re-read as octal. One with an 8 or 9 in it
/// is kept as text, so that a field expecting a number reports it.
fn legacy_octal(text: &str, pos: Pos) -> Option<Value> {
    let line = text.lines().nth(usize::try_from(pos.line).ok()?.checked_sub(1)?)?;
    let start = usize::try_from(pos.column).ok()?.checked_sub(1)?;
    let token: String = line
        .chars()
        .skip(start)
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'))
        .collect();
    let digits = token.strip_prefix('+').unwrap_or(&token);
    if digits.len() < 2 || !digits.starts_with('0') || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    match i64::from_str_radix(digits, 8) {
        Ok(v) => Some(Value::Int(v)),
        Err(_) => Some(Value::String(token)),
    }
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = RawValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<RawValue, E> {
        Ok(RawValue::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<RawValue, E> {
        Ok(RawValue::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawValue, D::Error> {
        RawValue::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawValue, E> {
        Ok(RawValue::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawValue, E> {
        Ok(RawValue::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawValue, E> {
        i64::try_from(v)
            .map(RawValue::Int)
            .map_err(|_| E::custom(format!("integer {v} is too large")))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawValue, E> {
        Ok(RawValue::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawValue, E> {
        Ok(RawValue::String(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<RawValue, E> {
        Ok(RawValue::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<RawValue>>()? {
            items.push(item);
        }
        Ok(RawValue::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawValue, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<KeyString>>()? {
            let value = map.next_value::<Spanned<RawValue>>()?;
            let key = Spanned::new(key.value.0, key.referenced, key.defined);
            entries.push((key, value));
        }
        Ok(RawValue::Map(entries))
    }
}

/// A mapping key: scalars of any type are taken as their text.
struct KeyString(String);

impl<'de> Deserialize<'de> for KeyString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyString;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a scalar mapping key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<KeyString, E> {
                Ok(KeyString("null".to_string()))
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_values() {
        let n = parse("a.yml", "a: 1\nb:\n  c: [x, 'y']\n  d: 0440\n").unwrap();
        assert_eq!(n.get("a").unwrap().value, Value::Int(1));
        let b = n.get("b").unwrap();
        assert_eq!(b.get("c").unwrap().pos.line, 3);
        assert_eq!(b.get("d").unwrap().value, Value::Int(0o440));
        let m = parse("m.yml", "a: 0948\nb: 0\nc: 10\n").unwrap();
        assert_eq!(m.get("a").unwrap().value, Value::String("0948".into()));
        assert_eq!(m.get("b").unwrap().value, Value::Int(0));
        assert_eq!(m.get("c").unwrap().value, Value::Int(10));
        assert_eq!(
            n.locate(&["b".into(), "c".into(), "1".into()]),
            Pos { line: 3, column: 10 }
        );
    }

    #[test]
    fn empty_is_null() {
        assert_eq!(parse("e", "").unwrap().value, Value::Null);
        assert_eq!(parse("e", "# only a comment\n").unwrap().value, Value::Null);
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let err = parse("bad.yml", "a: [1, 2\nb: 3\n").unwrap_err().to_string();
        assert!(err.starts_with("bad.yml:"), "{err}");
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn duplicate_keys_refused() {
        let err = parse("d.yml", "a: 1\na: 2\n").unwrap_err().to_string();
        assert!(err.contains("d.yml"), "{err}");
    }

    #[test]
    fn alias_bomb_refused() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut prev = 'a';
        for c in 'b'..='k' {
            text.push_str(&format!("{c}: &{c} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
            prev = c;
        }
        assert!(parse("bomb.yml", &text).is_err());
    }

    #[test]
    fn oversized_refused() {
        let text = "a: ".to_string() + &"x".repeat(MAX_INPUT_BYTES + 1);
        assert!(matches!(parse("big.yml", &text), Err(YamlError::TooLarge { .. })));
    }
}

#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// No input, however malformed, panics the parser or the renderer.
        #[test]
        fn arbitrary_text_never_panics(text in "[ -~\\n\\t]{0,200}") {
            let _ = super::parse("fuzz.yaml", &text);
            let chart = crate::render::chart::Chart::embedded().expect("chart");
            let _ = chart.render(&crate::render::chart::RenderOptions {
                values_files: vec![("fuzz.yaml".into(), text.clone())],
                set: Vec::new(),
                stack: None,
                env: &|_| None,
                credential: &|_, _| Ok(b"test-password".to_vec()),
                generations: &|_| Default::default(),
                tls: &|_, _, _| Ok(None),
            });
            let _ = crate::render::compose::load::load("fuzz.yml", &text, &|_| None);
        }

        /// YAML-shaped inputs (keys, lists, anchors) reach deeper code paths.
        #[test]
        fn yaml_shaped_text_never_panics(
            lines in proptest::collection::vec("( {0,4})(-|[a-z]{1,8}:)( [a-z0-9&*\\[\\]{},:'\"$]{0,12})?", 0..20)
        ) {
            let text = lines.join("\n");
            let _ = super::parse("fuzz.yaml", &text);
            let _ = crate::render::compose::load::load("fuzz.yml", &text, &|_| None);
        }
    }
}
