//! Label and field selectors, as accepted by LIST and WATCH.
//!
//! The grammar follows `k8s.io/apimachinery/pkg/labels` (set- and
//! equality-based requirements, comma = AND) and `pkg/fields` (equality only,
//! on the few fields each resource supports).

use serde_json::Value;

use super::resources::Resource;
use super::status::{ApiError, Cause};
use super::validate;

#[derive(Clone, Debug, PartialEq)]
enum Op {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
}

#[derive(Clone, Debug, PartialEq)]
struct Requirement {
    key: String,
    op: Op,
}

/// A parsed label selector; empty matches everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct LabelSelector {
    reqs: Vec<Requirement>,
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<LabelSelector, ApiError> {
        let mut p = Parser { chars: s.chars().collect(), pos: 0 };
        let mut reqs = Vec::new();
        p.skip_ws();
        if p.at_end() {
            return Ok(LabelSelector { reqs });
        }
        loop {
            reqs.push(p.requirement()?);
            p.skip_ws();
            if p.at_end() {
                break;
            }
            if !p.eat(',') {
                return Err(p.err("found unexpected token, expected: ',' or 'end of string'"));
            }
        }
        Ok(LabelSelector { reqs })
    }

    pub fn matches(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.reqs.iter().all(|r| match &r.op {
            Op::Eq(v) => get(&r.key) == Some(v.as_str()),
            Op::NotEq(v) => get(&r.key) != Some(v.as_str()),
            Op::In(vs) => get(&r.key).is_some_and(|x| vs.iter().any(|v| v == x)),
            Op::NotIn(vs) => get(&r.key).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Op::Exists => get(&r.key).is_some(),
            Op::NotExists => get(&r.key).is_none(),
        })
    }

    pub fn matches_object(&self, obj: &Value) -> bool {
        self.matches(obj.pointer("/metadata/labels").and_then(Value::as_object))
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }
    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn err(&self, what: &str) -> ApiError {
        ApiError::bad_request(format!("unable to parse requirement: {what}"))
    }
    /// A key or value token: anything up to whitespace or an operator character.
    fn word(&mut self) -> String {
        self.skip_ws();
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_whitespace() || matches!(c, ',' | '=' | '!' | '(' | ')') {
                break;
            }
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }

    fn requirement(&mut self) -> Result<Requirement, ApiError> {
        self.skip_ws();
        if self.eat('!') {
            let key = self.word();
            validate_key(&key).map_err(|m| self.err(&m))?;
            return Ok(Requirement { key, op: Op::NotExists });
        }
        let key = self.word();
        if key.is_empty() {
            return Err(self.err("found '', expected: identifier"));
        }
        validate_key(&key).map_err(|m| self.err(&m))?;
        self.skip_ws();
        let op = match self.peek() {
            None | Some(',') => return Ok(Requirement { key, op: Op::Exists }),
            Some('=') => {
                self.pos += 1;
                self.eat('=');
                Op::Eq(self.value()?)
            }
            Some('!') => {
                self.pos += 1;
                if !self.eat('=') {
                    return Err(self.err("found '!', expected: '!='"));
                }
                Op::NotEq(self.value()?)
            }
            _ => {
                let w = self.word();
                match w.as_str() {
                    "in" => Op::In(self.set()?),
                    "notin" => Op::NotIn(self.set()?),
                    other => return Err(self.err(&format!("found '{other}', expected: in, notin, =, ==, !=, gt, lt"))),
                }
            }
        };
        Ok(Requirement { key, op })
    }

    fn value(&mut self) -> Result<String, ApiError> {
        let v = self.word();
        self.skip_ws();
        if matches!(self.peek(), Some('=') | Some('!') | Some('(') | Some(')')) {
            return Err(self.err(&format!("found '{}', expected: ',' or 'end of string'", self.peek().unwrap())));
        }
        validate_value(&v).map_err(|m| self.err(&m))?;
        Ok(v)
    }

    fn set(&mut self) -> Result<Vec<String>, ApiError> {
        self.skip_ws();
        if !self.eat('(') {
            return Err(self.err("found '', expected: '('"));
        }
        let mut vs = Vec::new();
        loop {
            let v = self.word();
            validate_value(&v).map_err(|m| self.err(&m))?;
            vs.push(v);
            self.skip_ws();
            if self.eat(')') {
                break;
            }
            if !self.eat(',') {
                return Err(self.err("found unexpected token, expected: ',', ')'"));
            }
        }
        Ok(vs)
    }
}

/// A label key must be a qualified name; the first error, as the parser words it.
fn validate_key(k: &str) -> Result<(), String> {
    validate::qualified_name_error(k).map_or(Ok(()), |e| Err(Cause::invalid("key", k, e).full()))
}

fn validate_value(v: &str) -> Result<(), String> {
    validate::label_value_error(v).map_or(Ok(()), |e| Err(Cause::invalid("values[0][key]", v, e).full()))
}

/// A parsed field selector: `field=value`, `field==value`, `field!=value`, comma = AND.
#[derive(Clone, Debug, Default)]
pub(crate) struct FieldSelector {
    terms: Vec<(String, bool, String)>, // (field, equals?, value)
}

impl FieldSelector {
    pub fn parse(s: &str, res: &Resource) -> Result<FieldSelector, ApiError> {
        let mut terms = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, eq, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(ApiError::bad_request(format!("invalid selector: '{s}'; can't understand '{part}'")));
            };
            if !supported_fields(res).contains(&field) {
                return Err(ApiError::bad_request(format!("field label not supported: {field}")));
            }
            terms.push((field.to_string(), eq, value.to_string()));
        }
        Ok(FieldSelector { terms })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.terms.iter().all(|(field, eq, value)| {
            let pointer = format!("/{}", field.replace('.', "/"));
            let actual = obj.pointer(&pointer).and_then(Value::as_str).unwrap_or("");
            (actual == value) == *eq
        })
    }
}

/// The fields each resource's storage strategy exposes to field selectors.
fn supported_fields(res: &Resource) -> &'static [&'static str] {
    match res.plural {
        "secrets" => &["metadata.name", "metadata.namespace", "type"],
        "namespaces" => &["metadata.name", "status.phase"],
        _ => &["metadata.name", "metadata.namespace"],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(sel: &str, labels: Value) -> bool {
        LabelSelector::parse(sel).unwrap().matches(labels.as_object())
    }

    #[test]
    fn label_selector_grammar() {
        let l = json!({"app": "web", "tier": "front", "regcred.dev/managed": "true"});
        assert!(m("", l.clone()));
        assert!(m("app=web", l.clone()));
        assert!(m("app==web", l.clone()));
        assert!(!m("app=db", l.clone()));
        assert!(m("app!=db", l.clone()));
        assert!(m("missing!=db", l.clone()));
        assert!(m("app", l.clone()));
        assert!(m("!missing", l.clone()));
        assert!(!m("!app", l.clone()));
        assert!(m("tier in (front, back)", l.clone()));
        assert!(!m("tier notin (front,back)", l.clone()));
        assert!(m("missing notin (front)", l.clone()));
        assert!(!m("missing in (front)", l.clone()));
        assert!(m("app=web, regcred.dev/managed=true,tier in (front)", l.clone()));
        assert!(!m("app=web,tier=back", l));
        for bad in ["app=a=b", "app in front", "=x", "app==x y", "a in (b", "ap p"] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad}");
        }
        let e = LabelSelector::parse("-a=x").unwrap_err();
        assert!(
            e.message.starts_with(r#"unable to parse requirement: key: Invalid value: "-a": name part must"#),
            "{e:?}"
        );
        let e = LabelSelector::parse("a=-x").unwrap_err();
        assert!(e.message.starts_with(r#"unable to parse requirement: values[0][key]: Invalid value: "-x""#), "{e:?}");
    }

    #[test]
    fn field_selector() {
        let o = json!({"metadata": {"name": "a", "namespace": "ns"}, "type": "Opaque"});
        let f =
            FieldSelector::parse("metadata.name=a,type!=kubernetes.io/tls", &super::super::resources::SECRETS).unwrap();
        assert!(f.matches(&o));
        let f = FieldSelector::parse("metadata.name==b", &super::super::resources::SECRETS).unwrap();
        assert!(!f.matches(&o));
        assert!(FieldSelector::parse("spec.x=1", &super::super::resources::SECRETS).is_err());
    }
}
