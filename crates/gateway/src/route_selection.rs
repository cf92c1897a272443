//! The API's route selection expression, in API Gateway's selection-expression language:
//! variables start with `$` (`$request.body.action`), braces bound them where text follows
//! (`${request.body.version}-beta`), several variables and literal text between them make one
//! key (`${request.body.service}/${request.body.action}`), and `\$` is a literal dollar sign.
//! The only variables a WebSocket API's route selection may read are the message body's JSON
//! paths (`request.body.a.b`). Parsed once at start, so that a mistyped expression stops the
//! gateway with its name rather than sending every message to `$default`.

use std::fmt;

/// A parsed route selection expression.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteSelection {
    parts: Vec<Part>,
    /// Whether any part reads the body (else the key is a constant and the body is not parsed).
    reads_body: bool,
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Literal(String),
    /// A JSON path into the message body: its keys in order.
    Body(Vec<String>),
}

/// Why an expression cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("route selection expression {expression:?}: {why}")]
pub struct RouteSelectionError {
    pub expression: String,
    pub why: String,
}

/// The characters a bare (unbraced) variable's path is made of: anything else ends it.
fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

impl RouteSelection {
    /// Parses `expression`; an error names it and says what is wrong.
    pub fn parse(expression: &str) -> Result<Self, RouteSelectionError> {
        let fail = |why: String| RouteSelectionError { expression: expression.to_string(), why };
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = expression;
        while let Some(c) = rest.chars().next() {
            if c == '\\' && rest[1..].starts_with('$') {
                literal.push('$');
                rest = &rest[2..];
                continue;
            }
            if c != '$' {
                literal.push(c);
                rest = &rest[c.len_utf8()..];
                continue;
            }
            let variable;
            if let Some(braced) = rest.strip_prefix("${") {
                let end = braced.find('}').ok_or_else(|| fail("a `${` without its `}`".into()))?;
                variable = &braced[..end];
                rest = &braced[end + 1..];
            } else {
                let after = &rest[1..];
                let end = after.find(|c: char| !is_path_char(c)).unwrap_or(after.len());
                // A bare path never ends with the dot before the text that follows it.
                let end = after[..end].trim_end_matches('.').len();
                variable = &after[..end];
                rest = &after[end..];
            }
            let path = variable.strip_prefix("request.body.").ok_or_else(|| {
                fail(format!(
                    "`{variable}` is not a variable a route selection can read (only `request.body.<json path>`)"
                ))
            })?;
            let keys: Vec<String> = path.split('.').map(str::to_string).collect();
            if keys.iter().any(String::is_empty) {
                return Err(fail(format!("`{variable}` has an empty step in its JSON path")));
            }
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(Part::Body(keys));
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        if parts.is_empty() {
            return Err(fail("it is empty".into()));
        }
        let reads_body = parts.iter().any(|p| matches!(p, Part::Body(_)));
        Ok(Self { parts, reads_body })
    }

    /// The route key for a message body: each variable's value (a string as is, a number or
    /// boolean as its JSON text) with the literal text between them. `None` (→ `$default`) when
    /// the body is not JSON or any variable is missing, null, an object or an array.
    pub fn select(&self, body: &str) -> Option<String> {
        let value: serde_json::Value =
            if self.reads_body { serde_json::from_str(body).ok()? } else { Default::default() };
        let mut key = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => key.push_str(text),
                Part::Body(path) => {
                    let mut v = &value;
                    for step in path {
                        v = v.as_object()?.get(step)?;
                    }
                    match v {
                        serde_json::Value::String(s) => key.push_str(s),
                        serde_json::Value::Number(n) => key.push_str(&n.to_string()),
                        serde_json::Value::Bool(b) => key.push_str(if *b { "true" } else { "false" }),
                        serde_json::Value::Null | serde_json::Value::Object(_) | serde_json::Value::Array(_) => {
                            return None;
                        }
                    }
                }
            }
        }
        Some(key)
    }
}

impl fmt::Display for RouteSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Literal(text) => write!(f, "{}", text.replace('$', "\\$"))?,
                Part::Body(path) => write!(f, "${{request.body.{}}}", path.join("."))?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn select(expression: &str, body: &str) -> Option<String> {
        RouteSelection::parse(expression).expect("a valid expression").select(body)
    }

    #[test]
    fn a_body_path_selects_its_value() {
        let e = "$request.body.action";
        assert_eq!(select(e, r#"{"action":"sendmessage"}"#).as_deref(), Some("sendmessage"));
        assert_eq!(select(e, r#"{"action":7}"#).as_deref(), Some("7"));
        assert_eq!(select(e, r#"{"action":true}"#).as_deref(), Some("true"));
        assert_eq!(select(e, "test"), None, "not JSON");
        assert_eq!(select(e, r#"{"x":1}"#), None, "missing");
        assert_eq!(select(e, r#"{"action":null}"#), None);
        assert_eq!(select(e, r#"{"action":{"a":1}}"#), None);
        assert_eq!(select(e, r#"["action"]"#), None);
        assert_eq!(select("$request.body.a.b", r#"{"a":{"b":"join"}}"#).as_deref(), Some("join"));
        assert_eq!(select("$request.body.a.b", r#"{"a":"b"}"#), None);
    }

    #[test]
    fn braces_composites_and_literal_text() {
        assert_eq!(select("${request.body.action}", r#"{"action":"join"}"#).as_deref(), Some("join"));
        let composite = "${request.body.service}/${request.body.action}";
        let body = r#"{"service":"chat","action":"join"}"#;
        assert_eq!(select(composite, body).as_deref(), Some("chat/join"));
        assert_eq!(select(composite, r#"{"service":"chat"}"#), None, "one part missing: no key");
        assert_eq!(select("$request.body.a-${request.body.b}", r#"{"a":"x","b":2}"#).as_deref(), Some("x-2"));
        assert_eq!(select("${request.body.version}-beta", r#"{"version":"v2"}"#).as_deref(), Some("v2-beta"));
        // A bare path ends at the first character that cannot be in it, and never on a dot.
        assert_eq!(select("$request.body.a/b", r#"{"a":"x"}"#).as_deref(), Some("x/b"));
        assert_eq!(select("$request.body.a.", r#"{"a":"x"}"#).as_deref(), Some("x."));
        assert_eq!(select("v1:$request.body.a", r#"{"a":"x"}"#).as_deref(), Some("v1:x"));
        assert_eq!(select("\\$default", "anything").as_deref(), Some("$default"), "an escaped dollar is text");
    }

    #[test]
    fn bad_expressions_are_refused_with_their_text() {
        for bad in [
            "",
            "$request.header.x",
            "$request.body",
            "$request.body.",
            "${request.body.a",
            "$request.body.a..b",
            "${context.routeKey}",
            "$",
        ] {
            let err = RouteSelection::parse(bad).expect_err(bad);
            assert_eq!(err.expression, bad);
            assert!(err.to_string().contains("route selection expression"), "{err}");
        }
    }

    #[test]
    fn display_gives_an_equivalent_expression() {
        for e in ["$request.body.action", "${request.body.a.b}-x/${request.body.c}", "\\$default"] {
            let parsed = RouteSelection::parse(e).expect(e);
            assert_eq!(RouteSelection::parse(&parsed.to_string()).expect("reparsed"), parsed);
        }
    }
}
