//! Label selectors: which nodes a deployment targets, over their labels and their inventory (docs/rollouts.md,
//! "Selectors"). Pure: parsed once when a deployment is created, then matched against each node's [`Facts`] when
//! the deployment starts and whenever a node's labels, site or inventory change, so a node that comes to match
//! later joins.
//!
//! A selector is terms joined by `,`, all of which must hold; the empty selector matches every node. A term is
//! `KEY`, `!KEY`, `KEY = V`, `KEY != V`, `KEY in (V1, V2)`, `KEY notin (V1, V2)`, or an ordering `KEY >= V`
//! (`>`, `<=`, `<`). Orderings compare sizes (`8GiB`, `512MB`, `4`) as numbers and anything else as versions
//! (`6.1.0-18` against `6.1`: numeric runs compared as numbers). Keys name inventory facts (`site`, `hostname`,
//! `arch`, `kernel`, `vendor`, `product`, `cpu_model`, `cpus`, `memory`, `disk`, `version`, `group`,
//! `agent_version`) or, otherwise, labels; `labels.KEY` names a label whatever its key.

use std::cmp::Ordering;
use std::collections::BTreeMap;

/// What a selector can ask of a node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The node's labels with an admin's on top.
    pub labels: BTreeMap<String, String>,
    /// Inventory facts by key (`site`, `arch`, `memory` in bytes, ...); absent when unknown.
    pub inventory: BTreeMap<&'static str, String>,
}

/// The inventory keys, in the order the docs list them.
pub const INVENTORY_KEYS: [&str; 13] = [
    "site",
    "hostname",
    "arch",
    "kernel",
    "vendor",
    "product",
    "cpu_model",
    "cpus",
    "memory",
    "disk",
    "version",
    "group",
    "agent_version",
];

impl Facts {
    /// A node's facts: its merged labels, its group, and what its inventory says (the booted slot's bundle version
    /// as `version`, the largest disk as `disk`).
    pub fn of(
        labels: BTreeMap<String, String>,
        group: Option<&str>,
        inventory: Option<&fleet_wire::node::Inventory>,
    ) -> Facts {
        let mut f = Facts { labels, inventory: BTreeMap::new() };
        if let Some(g) = group {
            f.inventory.insert("group", g.to_owned());
        }
        let Some(inv) = inventory else { return f };
        let mut put = |k: &'static str, v: String| {
            if !v.is_empty() {
                f.inventory.insert(k, v);
            }
        };
        put("site", inv.site.clone().unwrap_or_default());
        put("hostname", inv.hostname.clone());
        put("arch", inv.arch.clone());
        put("kernel", inv.kernel.clone());
        put("vendor", inv.hardware.vendor.clone());
        put("product", inv.hardware.product.clone());
        put("cpu_model", inv.hardware.cpu_model.clone());
        put("cpus", inv.hardware.cpu_count.to_string());
        put("memory", inv.hardware.memory_bytes.to_string());
        if let Some(d) = inv.hardware.disks.iter().map(|d| d.size_bytes).max() {
            put("disk", d.to_string());
        }
        if let Some(b) = inv.slots.iter().find(|s| s.booted).and_then(|s| s.bundle.as_ref()) {
            put("version", b.version.clone());
        }
        put("agent_version", inv.agent_version.clone());
        f
    }

    fn get(&self, key: &Key) -> Option<&str> {
        match key {
            Key::Inventory(k) => self.inventory.get(k).map(String::as_str),
            Key::Label(k) => self.labels.get(k).map(String::as_str),
        }
    }
}

/// What a term names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Inventory(&'static str),
    Label(String),
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Inventory(k) => f.write_str(k),
            Key::Label(k) if INVENTORY_KEYS.contains(&k.as_str()) => write!(f, "labels.{k}"),
            Key::Label(k) => f.write_str(k),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    Exists(Key),
    Absent(Key),
    In(Key, Vec<String>),
    NotIn(Key, Vec<String>),
    Order(Key, Cmp, String),
}

/// A parsed selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    terms: Vec<Term>,
}

/// A selector that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("selector {text:?} at character {at}: expected {expected}")]
pub struct SelectorError {
    /// The selector.
    pub text: String,
    /// Where it stopped, counting from 0.
    pub at: usize,
    /// What it expected there.
    pub expected: &'static str,
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_./".contains(c)
}

fn is_value_char(c: char) -> bool {
    c.is_ascii_graphic() && !",()=!<>".contains(c)
}

struct Parser<'a> {
    text: &'a str,
    chars: Vec<char>,
    at: usize,
}

impl Parser<'_> {
    fn err(&self, expected: &'static str) -> SelectorError {
        SelectorError { text: self.text.to_owned(), at: self.at, expected }
    }
    fn skip_space(&mut self) {
        while self.chars.get(self.at).is_some_and(|c| c.is_whitespace()) {
            self.at += 1;
        }
    }
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }
    fn eat(&mut self, s: &str) -> bool {
        let n = s.chars().count();
        if self.chars.len() >= self.at + n && self.chars[self.at..self.at + n].iter().copied().eq(s.chars()) {
            self.at += n;
            true
        } else {
            false
        }
    }
    fn word(&mut self, ok: fn(char) -> bool, expected: &'static str) -> Result<String, SelectorError> {
        self.skip_space();
        let start = self.at;
        while self.peek().is_some_and(ok) {
            self.at += 1;
        }
        if self.at == start {
            return Err(self.err(expected));
        }
        Ok(self.chars[start..self.at].iter().collect())
    }
    fn key(&mut self) -> Result<Key, SelectorError> {
        let w = self.word(is_key_char, "a key")?;
        if !w.starts_with(|c: char| c.is_ascii_alphabetic()) {
            self.at -= w.chars().count();
            return Err(self.err("a key starting with a letter"));
        }
        if let Some(label) = w.strip_prefix("labels.") {
            if label.is_empty() {
                return Err(self.err("a label's key after labels."));
            }
            return Ok(Key::Label(label.to_owned()));
        }
        Ok(match INVENTORY_KEYS.iter().find(|k| **k == w) {
            Some(k) => Key::Inventory(k),
            None => Key::Label(w),
        })
    }
    fn value(&mut self) -> Result<String, SelectorError> {
        self.word(is_value_char, "a value")
    }
    fn list(&mut self) -> Result<Vec<String>, SelectorError> {
        self.skip_space();
        if !self.eat("(") {
            return Err(self.err("( after in or notin"));
        }
        let mut values = vec![self.value()?];
        loop {
            self.skip_space();
            if self.eat(")") {
                return Ok(values);
            }
            if !self.eat(",") {
                return Err(self.err(", or ) in a list of values"));
            }
            values.push(self.value()?);
        }
    }
    fn term(&mut self) -> Result<Term, SelectorError> {
        self.skip_space();
        if self.eat("!") {
            return Ok(Term::Absent(self.key()?));
        }
        let key = self.key()?;
        self.skip_space();
        let term = if self.eat("!=") {
            Term::NotIn(key, vec![self.value()?])
        } else if self.eat(">=") {
            Term::Order(key, Cmp::Ge, self.value()?)
        } else if self.eat("<=") {
            Term::Order(key, Cmp::Le, self.value()?)
        } else if self.eat(">") {
            Term::Order(key, Cmp::Gt, self.value()?)
        } else if self.eat("<") {
            Term::Order(key, Cmp::Lt, self.value()?)
        } else if self.eat("==") || self.eat("=") {
            Term::In(key, vec![self.value()?])
        } else if self.eat("notin") {
            Term::NotIn(key, self.list()?)
        } else if self.eat("in") {
            Term::In(key, self.list()?)
        } else {
            Term::Exists(key)
        };
        Ok(term)
    }
}

impl Selector {
    /// Parses a selector; the error says where it stopped and what it expected.
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let mut p = Parser { text, chars: text.chars().collect(), at: 0 };
        let mut terms = Vec::new();
        p.skip_space();
        if p.peek().is_none() {
            return Ok(Selector { terms });
        }
        loop {
            terms.push(p.term()?);
            p.skip_space();
            match p.peek() {
                None => return Ok(Selector { terms }),
                Some(',') => p.at += 1,
                Some(_) => return Err(p.err(", between terms, or the end")),
            }
        }
    }

    /// Whether every term holds of the node.
    pub fn matches(&self, facts: &Facts) -> bool {
        self.terms.iter().all(|t| holds(t, facts))
    }

    /// Whether the selector has no terms (it matches every node).
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

impl std::fmt::Display for Selector {
    /// The canonical form, which parses back to the same selector.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |v: &[String]| v.join(", ");
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match t {
                Term::Exists(k) => write!(f, "{k}")?,
                Term::Absent(k) => write!(f, "!{k}")?,
                Term::In(k, v) if v.len() == 1 => write!(f, "{k} = {}", v[0])?,
                Term::In(k, v) => write!(f, "{k} in ({})", list(v))?,
                Term::NotIn(k, v) if v.len() == 1 => write!(f, "{k} != {}", v[0])?,
                Term::NotIn(k, v) => write!(f, "{k} notin ({})", list(v))?,
                Term::Order(k, c, v) => {
                    let op = match c {
                        Cmp::Gt => ">",
                        Cmp::Ge => ">=",
                        Cmp::Lt => "<",
                        Cmp::Le => "<=",
                    };
                    write!(f, "{k} {op} {v}")?
                }
            }
        }
        Ok(())
    }
}

fn holds(term: &Term, facts: &Facts) -> bool {
    match term {
        Term::Exists(k) => facts.get(k).is_some(),
        Term::Absent(k) => facts.get(k).is_none(),
        Term::In(k, vs) => facts.get(k).is_some_and(|v| vs.iter().any(|x| x == v)),
        // A node without the key is not one of the values.
        Term::NotIn(k, vs) => facts.get(k).is_none_or(|v| vs.iter().all(|x| x != v)),
        Term::Order(k, cmp, want) => {
            let Some(have) = facts.get(k) else { return false };
            let ord = match (size(have), size(want)) {
                (Some(a), Some(b)) => a.cmp(&b),
                _ => version_cmp(have, want),
            };
            match cmp {
                Cmp::Gt => ord == Ordering::Greater,
                Cmp::Ge => ord != Ordering::Less,
                Cmp::Lt => ord == Ordering::Less,
                Cmp::Le => ord != Ordering::Greater,
            }
        }
    }
}

/// A size: a whole number with an optional unit (`KB`, `MB`, `GB`, `TB` in powers of 1000, `KiB` ... `TiB` in
/// powers of 1024), as bytes; `None` when the text is not one.
pub fn size(text: &str) -> Option<u128> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let n: u128 = text[..digits].parse().ok()?;
    let unit: u128 = match &text[digits..] {
        "" | "B" => 1,
        "KB" | "K" => 1_000,
        "MB" | "M" => 1_000_000,
        "GB" | "G" => 1_000_000_000,
        "TB" | "T" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(unit)
}

/// Compares versions: runs of digits as numbers, everything else character by character; a version that is a
/// prefix of another is the lower (`6.1` < `6.1.0-18`).
pub fn version_cmp(a: &str, b: &str) -> Ordering {
    let parts = |s: &str| -> Vec<(bool, String)> {
        let mut out: Vec<(bool, String)> = Vec::new();
        for c in s.chars() {
            let d = c.is_ascii_digit();
            match out.last_mut() {
                Some((was, run)) if *was == d && d => run.push(c),
                _ => out.push((d, c.to_string())),
            }
        }
        out
    };
    let (pa, pb) = (parts(a), parts(b));
    for (x, y) in pa.iter().zip(&pb) {
        let ord = match (x.0, y.0) {
            (true, true) => {
                let (tx, ty) = (x.1.trim_start_matches('0'), y.1.trim_start_matches('0'));
                tx.len().cmp(&ty.len()).then_with(|| tx.cmp(ty))
            }
            _ => x.1.cmp(&y.1),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    pa.len().cmp(&pb.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        let mut f = Facts::default();
        f.labels.insert("role".into(), "till".into());
        f.labels.insert("line".into(), "3".into());
        f.labels.insert("site".into(), "label-site".into());
        f.inventory.insert("site", "depot-7".into());
        f.inventory.insert("arch", "aarch64".into());
        f.inventory.insert("memory", (8u64 << 30).to_string());
        f.inventory.insert("kernel", "6.1.0-18-arm64".into());
        f.inventory.insert("version", "2.0.0".into());
        f
    }

    fn check(selector: &str, expected: bool) {
        let s = Selector::parse(selector).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.matches(&facts()), expected, "{selector}");
        let canonical = s.to_string();
        assert_eq!(Selector::parse(&canonical).expect("canonical form parses"), s, "{selector} -> {canonical}");
    }

    #[test]
    fn terms_match_labels_and_inventory() {
        check("", true);
        check("role = till", true);
        check("role == till", true);
        check("role = pos", false);
        check("role != pos", true);
        check("absent != x", true);
        check("role in (pos, till)", true);
        check("role notin (pos, till)", false);
        check("absent notin (a)", true);
        check("absent in (a)", false);
        check("role", true);
        check("!role", false);
        check("!gpu", true);
        check("site = depot-7", true);
        check("labels.site = label-site", true);
        check("arch = aarch64, memory >= 8GiB", true);
        check("memory > 8GiB", false);
        check("memory >= 8GB", true);
        check("memory < 9GiB", true);
        check("memory <= 4GiB", false);
        check("kernel >= 6.1", true);
        check("kernel < 6.10", true);
        check("version >= 2.0.0", true);
        check("version > 2.0.0", false);
        check("version < 10.0", true);
        check("absent >= 1", false);
        check("line >= 3, line <= 3", true);
        check("  role=till ,arch=aarch64  ", true);
        check("group = a", false);
    }

    #[test]
    fn malformed_selectors_say_where() {
        let bad = |text: &str, at: usize| {
            let e = Selector::parse(text).expect_err(text);
            assert_eq!(e.at, at, "{text}: {e}");
        };
        bad("role =", 6);
        bad("= till", 0);
        bad("role in till", 8);
        bad("role in (a b)", 11);
        bad("role till", 5);
        bad("1role", 0);
        bad("role = a,", 9);
        bad("labels. = a", 7);
    }

    #[test]
    fn sizes_and_versions() {
        assert_eq!(size("8GiB"), Some(8 << 30));
        assert_eq!(size("512MB"), Some(512_000_000));
        assert_eq!(size("4"), Some(4));
        assert_eq!(size("4x"), None);
        assert_eq!(size("GiB"), None);
        assert_eq!(version_cmp("6.1.0-18", "6.1"), Ordering::Greater);
        assert_eq!(version_cmp("1.10", "1.9"), Ordering::Greater);
        assert_eq!(version_cmp("1.09", "1.9"), Ordering::Equal);
        assert_eq!(version_cmp("2.0.0-rc1", "2.0.0"), Ordering::Greater);
    }

    #[test]
    fn facts_come_from_the_inventory() {
        let inv: fleet_wire::node::Inventory = serde_json::from_value(serde_json::json!({
            "hostname": "till-4", "site": "depot-7", "labels": {"role": "till"},
            "hardware": {"cpu_count": 2, "memory_bytes": 1073741824,
                "disks": [{"name": "vda", "size_bytes": 100}, {"name": "vdb", "size_bytes": 300}]},
            "kernel": "6.1.0", "arch": "x86_64",
            "slots": [{"slot": "A", "booted": true, "state": "good", "bundle": {"name": "stack", "version": "1.0.0",
                "security_version": 1, "manifest_hash": "7d"}}],
            "agent_version": "0.1.0"
        }))
        .expect("inventory");
        let f = Facts::of(inv.labels.clone(), Some("line-3"), Some(&inv));
        let s =
            Selector::parse("site = depot-7, memory >= 1GiB, disk = 300, version = 1.0.0, group = line-3, cpus = 2")
                .expect("selector");
        assert!(s.matches(&f), "{f:?}");
        assert!(!Selector::parse("vendor").expect("selector").matches(&f), "an empty fact is absent");
    }
}
