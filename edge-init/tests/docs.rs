//! docs/edge-init.md says what the code does: its services.toml example parses, and each default in its key
//! tables is the default the parser gives.

use std::path::Path;

use edge_init::services::{self, Output, Ready, Restart};

fn doc() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/edge-init.md")).expect("docs")
}

/// The default cell of each table row whose first cell is `key`.
fn defaults(doc: &str, key: &str) -> Vec<String> {
    doc.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells.len() >= 4 && cells[1] == key).then(|| cells[2].to_owned())
        })
        .collect()
}

fn toml_list(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| format!("\"{s}\"")).collect();
    format!("`[{}]`", items.join(", "))
}

#[test]
fn the_example_parses() {
    let doc = doc();
    let start = doc.find("```toml\n[[service]]").expect("the services.toml example") + "```toml\n".len();
    let text = &doc[start..start + doc[start..].find("```").expect("end of the example")];
    let config = services::parse(text, Path::new("docs/edge-init.md")).expect("the example is valid");
    let names: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["app", "update-boot"]);
}

#[test]
fn the_tables_give_the_parsers_defaults() {
    let doc = doc();
    let config = services::parse("[[service]]\nname = \"a\"\nargv = [\"/a\"]\n", Path::new("t")).expect("minimal");
    let s = &config.services[0];
    let restart = match s.restart {
        Restart::Always => "always",
        Restart::OnFailure => "on-failure",
        Restart::Never => "never",
    };
    let ready = match s.ready {
        Ready::Started => "started",
        Ready::Notify => "notify",
        Ready::Exited => "exited",
    };
    let output = match &s.output {
        Output::Kmsg(_) => "`\"kmsg\"`".to_owned(),
        Output::File { file, .. } => file.display().to_string(),
    };
    let signal = if s.stop_signal == 15 { "TERM" } else { "another signal" };
    let d = &config.data;
    let w = &config.watchdog;
    let check = |key: &str, expected: String| {
        let found = defaults(&doc, key);
        assert!(!found.is_empty(), "no row for {key} in docs/edge-init.md");
        assert!(found.iter().all(|f| *f == expected), "{key}: the docs say {found:?}, the code {expected:?}");
    };
    check("`name`", "required".into());
    check("`argv`", "required".into());
    check("`env`", if s.env.is_empty() { "`{}`" } else { "not empty" }.into());
    check("`cwd`", format!("`{}`", s.cwd.display()));
    check("`user`, `group`", if s.user.is_none() && s.group.is_none() { "root" } else { "set" }.into());
    check("`restart`", format!("`{restart}`"));
    check("`backoff_secs`, `backoff_max_secs`", format!("{}, {}", s.backoff.as_secs(), s.backoff_max.as_secs()));
    check("`crash_budget`, `crash_window_secs`", format!("{}, {}", s.crash_budget, s.crash_window.as_secs()));
    check("`stop_signal`, `grace_secs`", format!("`{signal}`, {}", s.grace.as_secs()));
    check("`after`", if s.after.is_empty() { "`[]`" } else { "not empty" }.into());
    check("`ready`", format!("`{ready}`"));
    check("`start_timeout_secs`", s.start_timeout.as_secs().to_string());
    check("`output`", output);
    check("`critical`", format!("`{}`", s.critical));
    check("`hostname`", config.hostname.clone().unwrap_or_else(|| "none".into()));
    check("`modules`", toml_list(&config.modules.iter().map(|m| m.name.clone()).collect::<Vec<_>>()));
    check("`data.device`", format!("`\"{}\"`", d.device));
    check("`data.mount`", format!("`\"{}\"`", d.mount.display()));
    check("`data.fstype`", format!("`\"{}\"`", d.fstype));
    check("`data.options`", format!("`\"{}\"`", d.options));
    check("`data.format`", toml_list(&d.format));
    check("`data.fsck`", toml_list(&d.fsck));
    check("`data.wait_secs`", d.wait.as_secs().to_string());
    check("`enabled`", format!("`{}`", w.enabled));
    check("`device`", w.device.as_ref().map_or("none".into(), |p| p.display().to_string()));
    check("`identity`", w.identity.clone().unwrap_or_else(|| "none".into()));
    check("`timeout_secs`", w.timeout.as_secs().to_string());
}

#[test]
fn issue_14_the_tables_give_each_durations_range() {
    // Each duration key's row says "MIN to MAX" with the parser's limits (`services::DURATION_LIMITS`).
    let doc = doc();
    for (key, min, max) in services::DURATION_LIMITS {
        let short = key.rsplit('.').next().expect("a key");
        let rows: Vec<&str> = doc
            .lines()
            .filter(|l| {
                let first = l.split('|').nth(1).unwrap_or("").trim();
                first.starts_with('`') && (first.contains(&format!("`{key}`")) || first.contains(&format!("`{short}`")))
            })
            .collect();
        assert!(!rows.is_empty(), "no row for {key} in docs/edge-init.md");
        let range = format!("{min} to {max}");
        assert!(rows.iter().all(|r| r.contains(&range)), "{key}: the docs say {rows:?}, the code {range}");
    }
}
