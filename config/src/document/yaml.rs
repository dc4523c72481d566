//! A YAML tree that keeps the position of every node, built from saphyr's event parser.
//!
//! serde-based YAML readers stop at the first problem and forget where values came from. dsops
//! must report *every* problem in a file with its line and column, so it reads YAML into this
//! tree first and validates the tree. Plain scalars are resolved with the YAML 1.2 core schema
//! (`true`/`false`, `null`/`~`, integers, floats); quoted scalars are always strings.

use std::borrow::Cow;
use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use super::Diagnostics;

/// A 1-based line and column in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl Pos {
    fn from_span(span: &Span) -> Pos {
        Pos { line: span.start.line(), column: span.start.col() + 1 }
    }
}

/// How a scalar was resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarKind {
    /// `null`, `~` or nothing.
    Null,
    /// `true` or `false`.
    Bool,
    /// An integer.
    Int,
    /// A float.
    Float,
    /// A string (quoted, or a plain scalar that is nothing else).
    Str,
}

/// A node's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar with its original text.
    Scalar {
        /// The text as written (unescaped for quoted scalars).
        text: String,
        /// How it resolved.
        kind: ScalarKind,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in file order. Keys are scalars; duplicates were reported and dropped.
    Map(Vec<(Node, Node)>),
}

/// A value and where it starts in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where it starts.
    pub pos: Pos,
}

impl Node {
    /// The text of a scalar node of any kind.
    pub fn scalar_text(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// What the node is, for messages: "a string", "a mapping", ...
    pub fn describe(&self) -> &'static str {
        match &self.value {
            Value::Scalar { kind: ScalarKind::Null, .. } => "null",
            Value::Scalar { kind: ScalarKind::Bool, .. } => "a boolean",
            Value::Scalar { kind: ScalarKind::Int, .. } => "an integer",
            Value::Scalar { kind: ScalarKind::Float, .. } => "a number",
            Value::Scalar { kind: ScalarKind::Str, .. } => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// Looks up a mapping entry by key.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => {
                entries.iter().find(|(k, _)| k.scalar_text() == Some(key)).map(|(_, v)| v)
            }
            _ => None,
        }
    }

    /// Follows a JSON pointer (`/spec/credentialKinds/0/name`) as far as it leads, returning the
    /// deepest node reached: a schema error about a missing field points at its parent.
    pub fn at_pointer(&self, pointer: &str) -> &Node {
        let mut node = self;
        for raw in pointer.split('/').skip(1) {
            let token = unescape_pointer_token(raw);
            let next = match &node.value {
                Value::Map(_) => node.get(&token),
                Value::Seq(items) => token.parse::<usize>().ok().and_then(|i| items.get(i)),
                Value::Scalar { .. } => None,
            };
            match next {
                Some(next) => node = next,
                None => break,
            }
        }
        node
    }

    /// Converts to JSON (for JSON Schema validation and typed deserialization).
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Scalar { text, kind } => match kind {
                ScalarKind::Null => serde_json::Value::Null,
                ScalarKind::Bool => serde_json::Value::Bool(text == "true"),
                ScalarKind::Int => parse_int(text)
                    .map(serde_json::Value::from)
                    .unwrap_or_else(|| serde_json::Value::String(text.clone())),
                ScalarKind::Float => parse_float(text)
                    .and_then(serde_json::Number::from_f64)
                    .map(serde_json::Value::Number)
                    .unwrap_or_else(|| serde_json::Value::String(text.clone())),
                ScalarKind::Str => serde_json::Value::String(text.clone()),
            },
            Value::Seq(items) => {
                serde_json::Value::Array(items.iter().map(Node::to_json).collect())
            }
            Value::Map(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.scalar_text().unwrap_or_default().to_owned(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

pub(crate) fn parse_int(text: &str) -> Option<i64> {
    if let Some(hex) = text.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok();
    }
    if let Some(oct) = text.strip_prefix("0o") {
        return i64::from_str_radix(oct, 8).ok();
    }
    text.parse().ok()
}

/// Unescapes one JSON-pointer token (`~1` is `/`, `~0` is `~`).
pub(crate) fn unescape_pointer_token(raw: &str) -> String {
    raw.replace("~1", "/").replace("~0", "~")
}

fn parse_float(text: &str) -> Option<f64> {
    match text {
        ".inf" | ".Inf" | ".INF" | "+.inf" => Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

/// Resolves a plain scalar with the YAML 1.2 core schema.
fn resolve_plain(text: &str) -> ScalarKind {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return ScalarKind::Null,
        "true" | "True" | "TRUE" | "false" | "False" | "FALSE" => return ScalarKind::Bool,
        _ => {}
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    let is_int = (!digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()))
        || text
            .strip_prefix("0x")
            .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
        || text
            .strip_prefix("0o")
            .is_some_and(|o| !o.is_empty() && o.chars().all(|c| ('0'..='7').contains(&c)));
    if is_int {
        return ScalarKind::Int;
    }
    let looks_numeric = digits.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && digits.chars().all(|c| c.is_ascii_digit() || "._eE+-".contains(c));
    if (looks_numeric && text.parse::<f64>().is_ok())
        || parse_float(text).is_some_and(|f| !f.is_finite())
    {
        return ScalarKind::Float;
    }
    ScalarKind::Str
}

/// The deepest nesting accepted (files that describe configuration need a handful of levels).
pub const MAX_DEPTH: usize = 64;
/// The most nodes a document may expand to, aliases included ("billion laughs" protection).
pub const MAX_NODES: usize = 1_000_000;

/// Parses one YAML document into a tree. Syntax errors, duplicate keys, non-scalar keys and
/// extra documents are reported to `diagnostics`; `None` means there is no usable tree.
pub fn parse_yaml(text: &str, file: &str, diagnostics: &mut Diagnostics) -> Option<Node> {
    let mut builder = Builder {
        file,
        diagnostics,
        anchors: HashMap::new(),
        stack: Vec::new(),
        nodes: 0,
        limit: None,
    };
    let mut documents = Vec::new();
    let mut parser = Parser::new_from_str(text);
    while let Some(next) = parser.next_event() {
        let (event, span) = match next {
            Ok(pair) => pair,
            Err(error) => {
                let marker = error.marker();
                let pos = Pos { line: marker.line(), column: marker.col() + 1 };
                builder.diagnostics.error(file, pos, "", format!("invalid YAML: {}", error.info()));
                return None;
            }
        };
        if let Some(done) = builder.event(event, span) {
            documents.push(done);
        }
        if let Some((pos, message)) = builder.limit.take() {
            builder.diagnostics.error(file, pos, "", message);
            return None;
        }
    }
    let mut documents = documents.into_iter();
    let first = documents.next();
    if let Some(extra) = documents.next() {
        builder.diagnostics.error(
            file,
            extra.pos,
            "",
            "the file holds more than one YAML document (`---`); put one document per file",
        );
    }
    if first.is_none() {
        builder.diagnostics.error(file, Pos::default(), "", "the file is empty");
    }
    first
}

enum Frame {
    Seq {
        pos: Pos,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        pos: Pos,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
        /// The line each key was first defined on: the duplicate check is one lookup per key,
        /// not a scan of the entries so far (a mapping of 130,000 keys was quadratic).
        seen: HashMap<String, usize>,
    },
}

struct Builder<'a> {
    file: &'a str,
    diagnostics: &'a mut Diagnostics,
    anchors: HashMap<usize, Node>,
    stack: Vec<Frame>,
    /// Nodes created so far, alias copies included.
    nodes: usize,
    /// A limit that was exceeded: parsing stops.
    limit: Option<(Pos, String)>,
}

/// How many nodes a tree holds.
fn count_nodes(node: &Node) -> usize {
    1 + match &node.value {
        Value::Scalar { .. } => 0,
        Value::Seq(items) => items.iter().map(count_nodes).sum(),
        Value::Map(entries) => entries.iter().map(|(k, v)| count_nodes(k) + count_nodes(v)).sum(),
    }
}

impl Builder<'_> {
    /// Feeds one event; returns a finished document's root.
    fn event(&mut self, event: Event<'_>, span: Span) -> Option<Node> {
        let pos = Pos::from_span(&span);
        if self.limit.is_some() {
            return None;
        }
        self.nodes += 1;
        if matches!(event, Event::SequenceStart(..) | Event::MappingStart(..))
            && self.stack.len() >= MAX_DEPTH
        {
            self.limit = Some((pos, format!("the document nests deeper than {MAX_DEPTH} levels")));
            return None;
        }
        match event {
            Event::Scalar(text, style, anchor, _tag) => {
                let kind = if style == ScalarStyle::Plain {
                    resolve_plain(&text)
                } else {
                    ScalarKind::Str
                };
                let node = Node { value: Value::Scalar { text: Cow::into_owned(text), kind }, pos };
                self.remember(anchor, &node);
                self.add(node)
            }
            Event::SequenceStart(anchor, _tag) => {
                self.stack.push(Frame::Seq { pos, anchor, items: Vec::new() });
                None
            }
            Event::MappingStart(anchor, _tag) => {
                self.stack.push(Frame::Map {
                    pos,
                    anchor,
                    entries: Vec::new(),
                    key: None,
                    seen: HashMap::new(),
                });
                None
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let node = match self.stack.pop()? {
                    Frame::Seq { pos, anchor, items } => {
                        let node = Node { value: Value::Seq(items), pos };
                        self.remember(anchor, &node);
                        node
                    }
                    Frame::Map { pos, anchor, entries, .. } => {
                        let node = Node { value: Value::Map(entries), pos };
                        self.remember(anchor, &node);
                        node
                    }
                };
                self.add(node)
            }
            Event::Alias(anchor) => {
                let size = self.anchors.get(&anchor).map_or(0, count_nodes);
                self.nodes += size;
                if self.nodes > MAX_NODES {
                    self.limit = Some((
                        pos,
                        format!(
                            "the document expands to more than {MAX_NODES} values (through aliases)"
                        ),
                    ));
                    return None;
                }
                let node = match self.anchors.get(&anchor) {
                    Some(target) => Node { value: target.value.clone(), pos },
                    None => {
                        self.diagnostics.error(self.file, pos, "", "alias to an unknown anchor");
                        Node {
                            value: Value::Scalar { text: String::new(), kind: ScalarKind::Null },
                            pos,
                        }
                    }
                };
                self.add(node)
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd => None,
        }
    }

    fn remember(&mut self, anchor: usize, node: &Node) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
    }

    /// Adds a finished node to its parent, or returns it as a document root.
    fn add(&mut self, node: Node) -> Option<Node> {
        match self.stack.last_mut() {
            None => Some(node),
            Some(Frame::Seq { items, .. }) => {
                items.push(node);
                None
            }
            Some(Frame::Map { entries, key, seen, .. }) => {
                match key.take() {
                    None => {
                        if !matches!(node.value, Value::Scalar { .. }) {
                            self.diagnostics.error(
                                self.file,
                                node.pos,
                                "",
                                format!(
                                    "a mapping key must be a plain value, not {}",
                                    node.describe()
                                ),
                            );
                        }
                        *key = Some(node);
                    }
                    Some(k) => {
                        let name = k.scalar_text().unwrap_or_default().to_owned();
                        if let Some(&first_line) = seen.get(&name) {
                            self.diagnostics.error(
                                self.file,
                                k.pos,
                                "",
                                format!(
                                    "duplicate key {name:?} (first defined on line {first_line})"
                                ),
                            );
                        } else if matches!(k.value, Value::Scalar { .. }) {
                            seen.insert(name, k.pos.line);
                            entries.push((k, node));
                        }
                    }
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Option<Node>, Vec<String>) {
        let mut diagnostics = Diagnostics::new();
        let node = parse_yaml(text, "t.yaml", &mut diagnostics);
        (node, diagnostics.sorted().iter().map(ToString::to_string).collect())
    }

    #[test]
    fn keeps_positions_and_resolves_scalars() {
        let (node, errors) = parse("a: 1\nb:\n  - 'x'\n  - true\n  - ~\n  - 1.5\n  - hello\n");
        assert!(errors.is_empty(), "{errors:?}");
        let node = node.unwrap();
        assert_eq!(node.get("a").unwrap().pos, Pos { line: 1, column: 4 });
        let b = node.get("b").unwrap();
        let Value::Seq(items) = &b.value else { panic!("not a seq") };
        let kinds: Vec<_> = items
            .iter()
            .map(|n| match &n.value {
                Value::Scalar { kind, .. } => *kind,
                _ => panic!(),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ScalarKind::Str,
                ScalarKind::Bool,
                ScalarKind::Null,
                ScalarKind::Float,
                ScalarKind::Str
            ]
        );
        assert_eq!(items[0].pos, Pos { line: 3, column: 5 });
        assert_eq!(
            node.to_json(),
            serde_json::json!({"a": 1, "b": ["x", true, null, 1.5, "hello"]})
        );
    }

    #[test]
    fn reports_duplicate_keys_with_both_lines() {
        let (_, errors) = parse("a: 1\nb: 2\na: 3\n");
        assert_eq!(errors, ["t.yaml:3:1: error: duplicate key \"a\" (first defined on line 1)"]);
    }

    /// A 1 MiB mapping of 130,000 keys: each key is checked against the ones before it by a
    /// lookup. The scan of the entries so far that this replaced did 8.5 billion string
    /// comparisons here: seconds in a release build, much longer in a debug one.
    #[test]
    fn duplicate_keys_in_a_huge_mapping_are_found_by_lookup() {
        let mut text = String::with_capacity(2 << 20);
        for i in 0..130_000 {
            text.push_str(&format!("key_{i}: {i}\n"));
        }
        text.push_str("key_7: again\n");
        let (node, errors) = parse(&text);
        assert_eq!(
            errors,
            ["t.yaml:130001:1: error: duplicate key \"key_7\" (first defined on line 8)"]
        );
        let Some(Node { value: Value::Map(entries), .. }) = node else { panic!("not a mapping") };
        assert_eq!(entries.len(), 130_000);
    }

    #[test]
    fn reports_syntax_errors_with_position() {
        let (node, errors) = parse("a: [1, 2\nb: 3\n");
        assert!(node.is_none());
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("t.yaml:"), "{errors:?}");
        assert!(errors[0].contains("invalid YAML"), "{errors:?}");
    }

    #[test]
    fn rejects_multiple_documents_and_empty_files() {
        let (_, errors) = parse("a: 1\n---\nb: 2\n");
        assert!(errors[0].contains("more than one YAML document"), "{errors:?}");
        let (node, errors) = parse("# only a comment\n");
        assert!(node.is_none());
        assert!(errors[0].contains("the file is empty"), "{errors:?}");
    }

    #[test]
    fn aliases_copy_the_anchored_value() {
        let (node, errors) = parse("base: &b {x: 1}\nother: *b\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            node.unwrap().to_json(),
            serde_json::json!({"base": {"x": 1}, "other": {"x": 1}})
        );
    }

    #[test]
    fn refuses_alias_bombs_and_deep_nesting() {
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for (i, name) in ["b", "c", "d", "e", "f", "g", "h"].iter().enumerate() {
            let prev = ["a", "b", "c", "d", "e", "f", "g"][i];
            bomb.push_str(&format!("{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        let (node, errors) = parse(&bomb);
        assert!(node.is_none());
        assert!(errors[0].contains("more than 1000000 values"), "{errors:?}");
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let (node, errors) = parse(&deep);
        assert!(node.is_none());
        assert!(errors[0].contains("deeper than 64 levels"), "{errors:?}");
    }

    #[test]
    fn pointer_lookup_stops_at_the_deepest_existing_node() {
        let (node, _) = parse("spec:\n  kinds:\n    - name: a\n");
        let node = node.unwrap();
        assert_eq!(node.at_pointer("/spec/kinds/0/name").pos, Pos { line: 3, column: 13 });
        assert_eq!(node.at_pointer("/spec/kinds/0/missing").pos, Pos { line: 3, column: 7 });
    }
}
