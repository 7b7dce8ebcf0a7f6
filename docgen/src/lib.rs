//! Generated sections of the Markdown docs (the rules' decision table, config defaults, exit codes), kept between two
//! marker lines; one small crate for every crate whose docs carry generated tables (`bootctl`, `updater`,
//! `edge-image`), so that each builds and checks them the same way without depending on another.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// Replaces the text between the line `begin` and the line `end` in `doc` with `table`; returns whether it changed.
/// Panics when a marker is missing, since that is a broken doc, not a stale one.
pub fn replace_section(doc: &mut String, begin: &str, end: &str, table: &str) -> bool {
    let start = doc.find(begin).unwrap_or_else(|| panic!("marker {begin:?} missing")) + begin.len();
    let stop = start + doc[start..].find(end).unwrap_or_else(|| panic!("marker {end:?} missing"));
    let changed = doc[start..stop] != *table;
    doc.replace_range(start..stop, table);
    changed
}

/// Checks (or, with `UPDATE_GOLDEN` set, rewrites) the generated sections of the doc at `path`: each is
/// `(begin marker, end marker, table)`. Fails naming the doc and the command that refreshes it.
pub fn check_doc(path: &std::path::Path, sections: &[(&str, &str, String)], refresh: &str) {
    let mut doc = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut stale = false;
    for (begin, end, table) in sections {
        stale |= replace_section(&mut doc, begin, end, table);
    }
    if update {
        std::fs::write(path, doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    } else {
        assert!(!stale, "{} is stale: {refresh}", path.display());
    }
}

/// A config reference table: one row per key, its default and its meaning (the key is shown as code).
pub fn key_table(rows: &[(&str, String, &str)]) -> String {
    let mut out = String::from("| key | default | meaning |\n| --- | --- | --- |\n");
    for (k, v, m) in rows {
        out.push_str(&format!("| `{k}` | {v} | {m} |\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_is_replaced_between_its_markers() {
        let mut doc = "a\n<!-- b -->\nold\n<!-- e -->\nz\n".to_owned();
        assert!(replace_section(&mut doc, "<!-- b -->\n", "<!-- e -->\n", "new\n"));
        assert_eq!(doc, "a\n<!-- b -->\nnew\n<!-- e -->\nz\n");
        assert!(!replace_section(&mut doc, "<!-- b -->\n", "<!-- e -->\n", "new\n"));
    }
}
