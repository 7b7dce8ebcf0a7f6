//! A strict, bounded reader and writer for the subset of Structured Field Values (RFC 8941) that `Signature-Input`,
//! `Signature` and `Content-Digest` use: a dictionary whose members are inner lists of strings or single items
//! (integers, strings, byte sequences), each with parameters (integers, strings, booleans).
//!
//! It is a module of its own because three headers share it and because it is where bytes from the network are read:
//! every length and count is bounded before anything is kept, and what RFC 8941 allows but the subset does not
//! (tokens, decimals, bare boolean members, duplicate keys) is refused rather than guessed at.
//! Writing gives the canonical form, so reading what was written gives the same value back.

use base64::Engine as _;

use crate::error::{FieldError, FieldErrorKind};

/// The longest field value read, in bytes.
pub const MAX_FIELD_BYTES: usize = 4096;
/// The most dictionary members read.
pub const MAX_MEMBERS: usize = 8;
/// The most items in one inner list.
pub const MAX_INNER_ITEMS: usize = 32;
/// The most parameters on one item or inner list.
pub const MAX_PARAMS: usize = 8;
/// The longest key (RFC 8941 asks parsers to take at least 64 characters).
pub const MAX_KEY_BYTES: usize = 64;
/// The longest string, in bytes.
pub const MAX_STRING_BYTES: usize = 512;
/// The longest byte sequence, in decoded bytes.
pub const MAX_BYTE_SEQUENCE: usize = 512;

/// One bare item of the subset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BareItem {
    /// An integer of at most 15 digits.
    Integer(i64),
    /// A string of printable ASCII.
    String(String),
    /// A byte sequence.
    Bytes(Vec<u8>),
    /// A boolean (only as a parameter's value).
    Boolean(bool),
}

/// Parameters in the order they appear, keys unique.
pub type Params = Vec<(String, BareItem)>;

/// An item with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The value.
    pub value: BareItem,
    /// Its parameters.
    pub params: Params,
}

/// A dictionary member's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Member {
    /// A single item: an integer, a string or a byte sequence.
    Item(Item),
    /// An inner list of strings, each with parameters, and the list's own parameters.
    InnerList {
        /// The strings.
        items: Vec<Item>,
        /// The list's parameters.
        params: Params,
    },
}

/// A dictionary: members in the order they appear, keys unique.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dictionary {
    /// The members.
    pub members: Vec<(String, Member)>,
}

impl Dictionary {
    /// The member under `key`.
    pub fn get(&self, key: &str) -> Option<&Member> {
        self.members.iter().find(|(k, _)| k == key).map(|(_, m)| m)
    }

    /// The canonical serialization (RFC 8941, section 4.1.2).
    pub fn serialize(&self) -> String {
        let mut out = String::new();
        for (i, (key, member)) in self.members.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(key);
            out.push('=');
            member.serialize_into(&mut out);
        }
        out
    }
}

impl Member {
    /// The canonical serialization of the member's value.
    pub fn serialize(&self) -> String {
        let mut out = String::new();
        self.serialize_into(&mut out);
        out
    }

    fn serialize_into(&self, out: &mut String) {
        match self {
            Member::Item(item) => item.serialize_into(out),
            Member::InnerList { items, params } => {
                out.push('(');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    item.serialize_into(out);
                }
                out.push(')');
                serialize_params(params, out);
            }
        }
    }
}

impl Item {
    fn serialize_into(&self, out: &mut String) {
        serialize_bare(&self.value, out);
        serialize_params(&self.params, out);
    }
}

fn serialize_params(params: &Params, out: &mut String) {
    for (key, value) in params {
        out.push(';');
        out.push_str(key);
        if *value != BareItem::Boolean(true) {
            out.push('=');
            serialize_bare(value, out);
        }
    }
}

fn serialize_bare(value: &BareItem, out: &mut String) {
    match value {
        BareItem::Integer(n) => out.push_str(&n.to_string()),
        BareItem::String(s) => {
            out.push('"');
            for c in s.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
        BareItem::Bytes(b) => {
            out.push(':');
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(b));
            out.push(':');
        }
        BareItem::Boolean(b) => out.push_str(if *b { "?1" } else { "?0" }),
    }
}

/// Whether `key` is a Structured Fields key of at most `MAX_KEY_BYTES` bytes (lowercase letter or `*`, then
/// lowercase letters, digits, `_`, `-`, `.`, `*`).
pub fn is_key(key: &str) -> bool {
    let b = key.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_KEY_BYTES
        && (b[0].is_ascii_lowercase() || b[0] == b'*')
        && b[1..].iter().all(|&c| is_key_char(c))
}

/// Whether `s` can be a Structured Fields string: printable ASCII, at most `MAX_STRING_BYTES` bytes.
pub fn is_string(s: &str) -> bool {
    s.len() <= MAX_STRING_BYTES && s.bytes().all(|c| (0x20..=0x7e).contains(&c))
}

fn is_key_char(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-' | b'.' | b'*')
}

/// Reads a dictionary field value (RFC 8941, section 4.2.2), within the bounds above and the subset.
/// An empty value is an empty dictionary.
pub fn parse_dictionary(value: &str) -> Result<Dictionary, FieldError> {
    if value.len() > MAX_FIELD_BYTES {
        return Err(FieldError { kind: FieldErrorKind::FieldTooLong, offset: 0 });
    }
    let mut p = Parser { s: value.trim_matches(' ').as_bytes(), pos: 0 };
    let mut dict = Dictionary::default();
    while !p.at_end() {
        if dict.members.len() == MAX_MEMBERS {
            return Err(p.err(FieldErrorKind::TooMany { what: "dictionary members", max: MAX_MEMBERS }));
        }
        let key_at = p.pos;
        let key = p.key()?;
        if dict.get(&key).is_some() {
            return Err(FieldError { kind: FieldErrorKind::DuplicateKey, offset: key_at });
        }
        if !p.eat(b'=') {
            return Err(p.err(FieldErrorKind::Unsupported("a member without a value")));
        }
        let member = if p.peek() == Some(b'(') {
            p.inner_list()?
        } else {
            let value = p.bare_item()?;
            if matches!(value, BareItem::Boolean(_)) {
                return Err(p.err(FieldErrorKind::Unsupported("a boolean member")));
            }
            Member::Item(Item { value, params: p.params()? })
        };
        dict.members.push((key, member));
        p.skip_ows();
        if p.at_end() {
            break;
        }
        if !p.eat(b',') {
            return Err(p.err(FieldErrorKind::Expected("',' between members")));
        }
        p.skip_ows();
        if p.at_end() {
            return Err(p.err(FieldErrorKind::Expected("a member after ','")));
        }
    }
    Ok(dict)
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn err(&self, kind: FieldErrorKind) -> FieldError {
        FieldError { kind, offset: self.pos }
    }

    fn skip_sp(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn key(&mut self) -> Result<String, FieldError> {
        match self.peek() {
            Some(c) if c.is_ascii_lowercase() || c == b'*' => {}
            _ => return Err(self.err(FieldErrorKind::Expected("a key"))),
        }
        let start = self.pos;
        while self.peek().is_some_and(is_key_char) {
            if self.pos - start == MAX_KEY_BYTES {
                return Err(self.err(FieldErrorKind::TooLong { what: "key", max: MAX_KEY_BYTES }));
            }
            self.pos += 1;
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }

    fn inner_list(&mut self) -> Result<Member, FieldError> {
        self.pos += 1; // '('
        let mut items = Vec::new();
        loop {
            self.skip_sp();
            if self.eat(b')') {
                let params = self.params()?;
                return Ok(Member::InnerList { items, params });
            }
            if items.len() == MAX_INNER_ITEMS {
                return Err(self.err(FieldErrorKind::TooMany { what: "inner-list items", max: MAX_INNER_ITEMS }));
            }
            let value = match self.peek() {
                Some(b'"') => self.bare_item()?,
                None => return Err(self.err(FieldErrorKind::Expected("')' closing the inner list"))),
                Some(_) => return Err(self.err(FieldErrorKind::Unsupported("an inner-list item other than a string"))),
            };
            let params = self.params()?;
            items.push(Item { value, params });
            if !matches!(self.peek(), Some(b' ' | b')')) {
                return Err(self.err(FieldErrorKind::Expected("' ' or ')' after an inner-list item")));
            }
        }
    }

    fn params(&mut self) -> Result<Params, FieldError> {
        let mut params: Params = Vec::new();
        while self.eat(b';') {
            self.skip_sp();
            if params.len() == MAX_PARAMS {
                return Err(self.err(FieldErrorKind::TooMany { what: "parameters", max: MAX_PARAMS }));
            }
            let key_at = self.pos;
            let key = self.key()?;
            if params.iter().any(|(k, _)| *k == key) {
                return Err(FieldError { kind: FieldErrorKind::DuplicateKey, offset: key_at });
            }
            let value = if self.eat(b'=') {
                let value = self.bare_item()?;
                if matches!(value, BareItem::Bytes(_)) {
                    return Err(self.err(FieldErrorKind::Unsupported("a byte sequence as a parameter")));
                }
                value
            } else {
                BareItem::Boolean(true)
            };
            params.push((key, value));
        }
        Ok(params)
    }

    fn bare_item(&mut self) -> Result<BareItem, FieldError> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => self.integer(),
            Some(b'"') => self.string(),
            Some(b':') => self.bytes(),
            Some(b'?') => self.boolean(),
            Some(c) if c.is_ascii_alphabetic() || c == b'*' => Err(self.err(FieldErrorKind::Unsupported("a token"))),
            _ => Err(self.err(FieldErrorKind::Expected("an item"))),
        }
    }

    fn integer(&mut self) -> Result<BareItem, FieldError> {
        let negative = self.eat(b'-');
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            if self.pos - start == 15 {
                return Err(self.err(FieldErrorKind::IntegerRange));
            }
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.err(FieldErrorKind::Expected("a digit")));
        }
        if self.peek() == Some(b'.') {
            return Err(self.err(FieldErrorKind::Unsupported("a decimal")));
        }
        let mut n: i64 = 0;
        for &d in &self.s[start..self.pos] {
            // At most 15 digits: no overflow.
            n = n * 10 + i64::from(d - b'0');
        }
        Ok(BareItem::Integer(if negative { -n } else { n }))
    }

    fn string(&mut self) -> Result<BareItem, FieldError> {
        self.pos += 1; // '"'
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.err(FieldErrorKind::Expected("'\"' closing the string")));
            };
            self.pos += 1;
            let c = match c {
                b'"' => return Ok(BareItem::String(out)),
                b'\\' => match self.peek() {
                    Some(e @ (b'"' | b'\\')) => {
                        self.pos += 1;
                        e
                    }
                    _ => return Err(self.err(FieldErrorKind::Expected("'\"' or '\\' after '\\'"))),
                },
                0x20..=0x7e => c,
                _ => return Err(self.err(FieldErrorKind::Expected("printable ASCII in a string"))),
            };
            if out.len() == MAX_STRING_BYTES {
                return Err(self.err(FieldErrorKind::TooLong { what: "string", max: MAX_STRING_BYTES }));
            }
            out.push(char::from(c));
        }
    }

    fn bytes(&mut self) -> Result<BareItem, FieldError> {
        self.pos += 1; // ':'
        let start = self.pos;
        let max_encoded = MAX_BYTE_SEQUENCE.div_ceil(3) * 4;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=')) {
            if self.pos - start == max_encoded {
                return Err(self.err(FieldErrorKind::TooLong { what: "byte sequence", max: MAX_BYTE_SEQUENCE }));
            }
            self.pos += 1;
        }
        let end = self.pos;
        if !self.eat(b':') {
            return Err(self.err(FieldErrorKind::Expected("':' closing the byte sequence")));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(&self.s[start..end])
            .map_err(|_| FieldError { kind: FieldErrorKind::Base64, offset: start })?;
        if decoded.len() > MAX_BYTE_SEQUENCE {
            return Err(FieldError {
                kind: FieldErrorKind::TooLong { what: "byte sequence", max: MAX_BYTE_SEQUENCE },
                offset: start,
            });
        }
        Ok(BareItem::Bytes(decoded))
    }

    fn boolean(&mut self) -> Result<BareItem, FieldError> {
        self.pos += 1; // '?'
        let value = match self.peek() {
            Some(b'1') => true,
            Some(b'0') => false,
            _ => return Err(self.err(FieldErrorKind::Expected("'0' or '1' after '?'"))),
        };
        self.pos += 1;
        Ok(BareItem::Boolean(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `input`, expects its canonical form `canonical`, and reads that back to the same value.
    fn check(input: &str, canonical: &str) {
        let dict = parse_dictionary(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(dict.serialize(), canonical, "{input:?}");
        assert_eq!(parse_dictionary(canonical), Ok(dict), "{input:?}");
    }

    fn refused(input: &str) -> FieldErrorKind {
        match parse_dictionary(input) {
            Err(e) => e.kind,
            Ok(d) => panic!("{input:?} read as {d:?}"),
        }
    }

    #[test]
    fn reads_the_subset() {
        check("", "");
        check("a=1", "a=1");
        check("  a=1 ,\tb=-42  ", "a=1, b=-42");
        check(
            "sig1=(\"@method\" \"@path\");created=1618884473;keyid=\"k\"",
            "sig1=(\"@method\" \"@path\");created=1618884473;keyid=\"k\"",
        );
        check("sig1=(  \"a\"   \"b\" )", "sig1=(\"a\" \"b\")");
        check("sig1=()", "sig1=()");
        check("s=(\"content-digest\";sf \"x\";key=\"k\";req=?0)", "s=(\"content-digest\";sf \"x\";key=\"k\";req=?0)");
        check("x=(\"a\");flag=?1", "x=(\"a\");flag");
        check(
            "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
            "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
        );
        check("e=::", "e=::");
        check("s=\"a\\\"b\\\\c\"", "s=\"a\\\"b\\\\c\"");
        check("*x.y_z-1=\"\"", "*x.y_z-1=\"\"");
        check("n=999999999999999", "n=999999999999999");
    }

    #[test]
    fn refuses_what_is_outside_it() {
        assert_eq!(refused("a=1, a=2"), FieldErrorKind::DuplicateKey);
        assert_eq!(refused("a=(\"x\");p=1;p=2"), FieldErrorKind::DuplicateKey);
        assert_eq!(refused("a"), FieldErrorKind::Unsupported("a member without a value"));
        assert_eq!(refused("a=?1"), FieldErrorKind::Unsupported("a boolean member"));
        assert_eq!(refused("a=tok"), FieldErrorKind::Unsupported("a token"));
        assert_eq!(refused("a=1.5"), FieldErrorKind::Unsupported("a decimal"));
        assert_eq!(refused("a=(1)"), FieldErrorKind::Unsupported("an inner-list item other than a string"));
        assert_eq!(refused("a=(\"x\");p=:AA==:"), FieldErrorKind::Unsupported("a byte sequence as a parameter"));
        assert_eq!(refused("a=1234567890123456"), FieldErrorKind::IntegerRange);
        assert_eq!(refused("a=:AB:"), FieldErrorKind::Base64);
        assert_eq!(refused("a=:AAA:"), FieldErrorKind::Base64);
        assert_eq!(refused("a=:AB=A:"), FieldErrorKind::Base64);
        assert_eq!(refused("a=:AA=="), FieldErrorKind::Expected("':' closing the byte sequence"));
        assert_eq!(refused("a=\"x"), FieldErrorKind::Expected("'\"' closing the string"));
        assert_eq!(refused("a=\"\\x\""), FieldErrorKind::Expected("'\"' or '\\' after '\\'"));
        assert_eq!(refused("a=\"\u{e9}\""), FieldErrorKind::Expected("printable ASCII in a string"));
        assert_eq!(refused("a=(\"x\""), FieldErrorKind::Expected("' ' or ')' after an inner-list item"));
        assert_eq!(refused("a=("), FieldErrorKind::Expected("')' closing the inner list"));
        assert_eq!(refused("a=(\"x\"\"y\")"), FieldErrorKind::Expected("' ' or ')' after an inner-list item"));
        assert_eq!(refused("a=1,"), FieldErrorKind::Expected("a member after ','"));
        assert_eq!(refused("a=1 b=2"), FieldErrorKind::Expected("',' between members"));
        assert_eq!(refused("A=1"), FieldErrorKind::Expected("a key"));
        assert_eq!(refused("a=-"), FieldErrorKind::Expected("a digit"));
        assert_eq!(refused("a="), FieldErrorKind::Expected("an item"));
    }

    #[test]
    fn bounds_every_length_and_count() {
        let long = format!("a={}", "1,a=".repeat(MAX_FIELD_BYTES));
        assert_eq!(refused(&long), FieldErrorKind::FieldTooLong);
        let members: Vec<String> = (0..=MAX_MEMBERS).map(|i| format!("k{i}=1")).collect();
        assert_eq!(
            refused(&members.join(", ")),
            FieldErrorKind::TooMany { what: "dictionary members", max: MAX_MEMBERS }
        );
        let items = format!("a=({})", vec!["\"x\""; MAX_INNER_ITEMS + 1].join(" "));
        assert_eq!(refused(&items), FieldErrorKind::TooMany { what: "inner-list items", max: MAX_INNER_ITEMS });
        let params: String = (0..=MAX_PARAMS).map(|i| format!(";p{i}=1")).collect();
        assert_eq!(refused(&format!("a=1{params}")), FieldErrorKind::TooMany { what: "parameters", max: MAX_PARAMS });
        let key = "k".repeat(MAX_KEY_BYTES + 1);
        assert_eq!(refused(&format!("{key}=1")), FieldErrorKind::TooLong { what: "key", max: MAX_KEY_BYTES });
        check(&format!("{}=1", "k".repeat(MAX_KEY_BYTES)), &format!("{}=1", "k".repeat(MAX_KEY_BYTES)));
        let string = "s".repeat(MAX_STRING_BYTES + 1);
        assert_eq!(
            refused(&format!("a=\"{string}\"")),
            FieldErrorKind::TooLong { what: "string", max: MAX_STRING_BYTES }
        );
        let bytes = base64::engine::general_purpose::STANDARD.encode(vec![7u8; MAX_BYTE_SEQUENCE + 1]);
        assert_eq!(
            refused(&format!("a=:{bytes}:")),
            FieldErrorKind::TooLong { what: "byte sequence", max: MAX_BYTE_SEQUENCE }
        );
        let bytes = base64::engine::general_purpose::STANDARD.encode(vec![7u8; MAX_BYTE_SEQUENCE]);
        check(&format!("a=:{bytes}:"), &format!("a=:{bytes}:"));
    }
}
