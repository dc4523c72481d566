use super::{Diagnostics, Node, Pos, ScalarKind, Value};

/// The closest candidate to a misspelt word, if one is close enough to be a likely typo.
pub fn suggest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    let lower = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|candidate| {
            let score = strsim::jaro_winkler(&lower, &candidate.to_ascii_lowercase());
            (score, candidate)
        })
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

/// `unknown {what} "{name}"`, with a "did you mean" hint when a candidate is close.
pub fn unknown_hinted<'c>(
    what: &str,
    name: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> String {
    match suggest(name, candidates) {
        Some(hint) => format!("unknown {what} {name:?}; did you mean {hint:?}?"),
        None => format!("unknown {what} {name:?}"),
    }
}

/// The message for a name that refers to nothing: `unknown {what} "{name}"`, then a "did you
/// mean" hint when a candidate is close, else `fallback`, else the candidates when there are few.
pub fn unknown_name(what: &str, name: &str, candidates: &[&str], fallback: Option<&str>) -> String {
    let mut message = format!("unknown {what} {name:?}");
    if let Some(hint) = suggest(name, candidates.iter().copied()) {
        message.push_str(&format!("; did you mean {hint:?}?"));
    } else if let Some(fallback) = fallback {
        message.push_str(&format!("; {fallback}"));
    } else if !candidates.is_empty() && candidates.len() <= 12 {
        message.push_str(&format!("; expected one of: {}", candidates.join(", ")));
    }
    message
}

/// Joins a field path: `envs` + `dev` → `envs.dev`.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

/// The hint after "unknown field": a close match, else the whole list of allowed keys.
fn expected_keys(name: &str, allowed: &[&str]) -> String {
    match suggest(name, allowed.iter().copied()) {
        Some(hint) => format!("; did you mean {hint:?}?"),
        None if allowed.is_empty() => String::new(),
        None => format!("; expected one of: {}", allowed.join(", ")),
    }
}

/// A mapping being read as a set of known fields.
///
/// Created with [`Fields::read`], which reports a non-mapping and every unknown key (with a
/// suggestion) at once. The getters then report wrong types and missing required fields; each
/// returns `None` after reporting, so validation carries on and finds the next problem.
#[derive(Debug)]
pub struct Fields<'a> {
    node: &'a Node,
    file: &'a str,
    path: String,
}

impl<'a> Fields<'a> {
    /// Reads `node` as a mapping whose keys must be among `allowed`.
    pub fn read(
        node: &'a Node,
        file: &'a str,
        path: &str,
        allowed: &[&str],
        diagnostics: &mut Diagnostics,
    ) -> Option<Fields<'a>> {
        let Value::Map(entries) = &node.value else {
            diagnostics.error(
                file,
                node.pos,
                path,
                format!("expected a mapping, found {}", node.describe()),
            );
            return None;
        };
        for (key, _) in entries {
            let name = key.scalar_text().unwrap_or_default();
            if !allowed.contains(&name) {
                let message = format!(
                    "{}{}",
                    unknown_name("field", name, &[], None),
                    expected_keys(name, allowed)
                );
                diagnostics.error(file, key.pos, &join(path, name), message);
            }
        }
        Some(Fields { node, file, path: path.to_owned() })
    }

    /// The mapping node itself.
    pub fn node(&self) -> &'a Node {
        self.node
    }

    /// Where the mapping starts.
    pub fn pos(&self) -> Pos {
        self.node.pos
    }

    /// The mapping's field path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The file being read.
    pub fn file(&self) -> &'a str {
        self.file
    }

    /// The path of a field of this mapping.
    pub fn child(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// A field's node, if present and not null.
    pub fn get(&self, key: &str) -> Option<&'a Node> {
        self.node
            .get(key)
            .filter(|n| !matches!(n.value, Value::Scalar { kind: ScalarKind::Null, .. }))
    }

    /// Reports that a required field is missing.
    pub fn missing(&self, key: &str, what: &str, diagnostics: &mut Diagnostics) {
        diagnostics.error(
            self.file,
            self.node.pos,
            &self.child(key),
            format!("is required: {what}"),
        );
    }

    /// Reports an error about a field (at the field's value when present).
    pub fn error(&self, key: &str, message: impl Into<String>, diagnostics: &mut Diagnostics) {
        let pos = self.node.get(key).map_or(self.node.pos, |n| n.pos);
        diagnostics.error(self.file, pos, &self.child(key), message);
    }

    /// An optional text field. Integers and floats are accepted as their text.
    pub fn string(&self, key: &str, diagnostics: &mut Diagnostics) -> Option<String> {
        let node = self.get(key)?;
        match &node.value {
            Value::Scalar { text, kind: ScalarKind::Str | ScalarKind::Int | ScalarKind::Float } => {
                Some(text.clone())
            }
            _ => {
                diagnostics.error(
                    self.file,
                    node.pos,
                    &self.child(key),
                    format!("expected a string, found {}", node.describe()),
                );
                None
            }
        }
    }

    /// A required text field; `what` says what it is for the error message.
    pub fn required_string(
        &self,
        key: &str,
        what: &str,
        diagnostics: &mut Diagnostics,
    ) -> Option<String> {
        if self.get(key).is_none() {
            self.missing(key, what, diagnostics);
            return None;
        }
        let value = self.string(key, diagnostics)?;
        if value.trim().is_empty() {
            self.error(key, format!("must not be empty: {what}"), diagnostics);
            return None;
        }
        Some(value)
    }

    /// An optional integer within a range.
    pub fn integer(
        &self,
        key: &str,
        range: std::ops::RangeInclusive<i64>,
        diagnostics: &mut Diagnostics,
    ) -> Option<i64> {
        let node = self.get(key)?;
        if let Value::Scalar { text, kind: ScalarKind::Int } = &node.value
            && super::yaml::parse_int(text).is_none()
        {
            diagnostics.error(
                self.file,
                node.pos,
                &self.child(key),
                format!("{text} is out of range; expected {} to {}", range.start(), range.end()),
            );
            return None;
        }
        let value = match &node.value {
            Value::Scalar { text, kind: ScalarKind::Int } => super::yaml::parse_int(text),
            _ => None,
        };
        match value {
            Some(value) if range.contains(&value) => Some(value),
            Some(value) => {
                diagnostics.error(
                    self.file,
                    node.pos,
                    &self.child(key),
                    format!(
                        "{value} is out of range; expected {} to {}",
                        range.start(),
                        range.end()
                    ),
                );
                None
            }
            None => {
                diagnostics.error(
                    self.file,
                    node.pos,
                    &self.child(key),
                    format!("expected an integer, found {}", node.describe()),
                );
                None
            }
        }
    }

    /// An optional boolean.
    pub fn boolean(&self, key: &str, diagnostics: &mut Diagnostics) -> Option<bool> {
        let node = self.get(key)?;
        match &node.value {
            Value::Scalar { text, kind: ScalarKind::Bool } => {
                Some(text.eq_ignore_ascii_case("true"))
            }
            _ => {
                diagnostics.error(
                    self.file,
                    node.pos,
                    &self.child(key),
                    format!("expected true or false, found {}", node.describe()),
                );
                None
            }
        }
    }

    /// An optional list of strings.
    pub fn string_list(&self, key: &str, diagnostics: &mut Diagnostics) -> Option<Vec<String>> {
        let node = self.get(key)?;
        let Value::Seq(items) = &node.value else {
            diagnostics.error(
                self.file,
                node.pos,
                &self.child(key),
                format!("expected a list, found {}", node.describe()),
            );
            return None;
        };
        let mut values = Vec::with_capacity(items.len());
        let mut ok = true;
        for (index, item) in items.iter().enumerate() {
            match &item.value {
                Value::Scalar { text, kind: ScalarKind::Str | ScalarKind::Int } => {
                    values.push(text.clone())
                }
                _ => {
                    ok = false;
                    diagnostics.error(
                        self.file,
                        item.pos,
                        &format!("{}[{index}]", self.child(key)),
                        format!("expected a string, found {}", item.describe()),
                    );
                }
            }
        }
        ok.then_some(values)
    }

    /// An optional list of names of `what` that must be among `known` (e.g. environments);
    /// each unknown one is reported at its item with a hint. Empty when absent.
    pub fn known_names(
        &self,
        key: &str,
        what: &str,
        known: &[&str],
        diagnostics: &mut Diagnostics,
    ) -> Vec<String> {
        let names = self.string_list(key, diagnostics).unwrap_or_default();
        for (index, name) in names.iter().enumerate() {
            if !known.contains(&name.as_str()) {
                let pos = match self.get(key).map(|n| &n.value) {
                    Some(Value::Seq(items)) => items.get(index).map(|i| i.pos),
                    _ => None,
                };
                diagnostics.error(
                    self.file,
                    pos.unwrap_or(self.node.pos),
                    &format!("{}[{index}]", self.child(key)),
                    unknown_name(what, name, known, None),
                );
            }
        }
        names
    }

    /// An optional mapping whose keys are names chosen by the user (e.g. `envs`), in file order.
    pub fn entries(
        &self,
        key: &str,
        diagnostics: &mut Diagnostics,
    ) -> Option<Vec<(&'a Node, &'a Node)>> {
        let node = self.get(key)?;
        let Value::Map(entries) = &node.value else {
            diagnostics.error(
                self.file,
                node.pos,
                &self.child(key),
                format!("expected a mapping, found {}", node.describe()),
            );
            return None;
        };
        Some(entries.iter().map(|(k, v)| (k, v)).collect())
    }
}
