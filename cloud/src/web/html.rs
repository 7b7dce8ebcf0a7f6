//! The web view's HTML: escaping, the page around every view, and the few pieces the views share (tables, forms
//! with their CSRF token, progress bars). Everything a view puts on a page goes through [`esc`] or is a literal of
//! this module's; no script is ever served (the Content-Security-Policy forbids any), and the only style is
//! `style.css`.

use std::fmt::Write as _;

/// Escapes text for an HTML element's content or a quoted attribute value.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes a value for a URL's query or path segment.
pub fn url_part(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Who is looking, for the page's header and its forms.
pub struct Viewer<'a> {
    /// The admin token's name.
    pub name: &'a str,
    /// Its role's word.
    pub role: &'a str,
    /// The session's CSRF token, put in every form.
    pub csrf: &'a str,
    /// The role may change things (operator or admin): forms are shown.
    pub may_change: bool,
}

/// A whole page: `title`, the navigation (with the viewer and a logout button when logged in), `body`; `refresh`
/// reloads it every so many seconds (a deployment in progress).
pub fn page(title: &str, viewer: Option<&Viewer<'_>>, refresh: Option<u32>, body: &str) -> String {
    let mut s = String::with_capacity(body.len() + 1024);
    s.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    s.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    if let Some(secs) = refresh {
        let _ = write!(s, "<meta http-equiv=\"refresh\" content=\"{secs}\">");
    }
    let _ = write!(s, "<title>{} · edge-cloud</title>", esc(title));
    s.push_str("<link rel=\"stylesheet\" href=\"/ui/style.css\"></head><body>");
    s.push_str("<header><a class=\"brand\" href=\"/ui/\">edge-cloud</a>");
    if let Some(v) = viewer {
        s.push_str("<nav><a href=\"/ui/\">Overview</a><a href=\"/ui/nodes\">Nodes</a>");
        s.push_str("<a href=\"/ui/deployments\">Deployments</a><a href=\"/ui/audit\">Audit</a></nav>");
        let _ = write!(
            s,
            "<form class=\"who\" method=\"post\" action=\"/ui/logout\">{}<span id=\"who\">{} ({})</span> \
             <button type=\"submit\">Log out</button></form>",
            csrf_field(v.csrf),
            esc(v.name),
            esc(v.role)
        );
    }
    let _ = writeln!(s, "</header><main><h1>{}</h1>{body}</main></body></html>", esc(title));
    s
}

/// The hidden CSRF field of a form.
pub fn csrf_field(csrf: &str) -> String {
    format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(csrf))
}

/// A form of one button that posts to `action`.
pub fn button(viewer: &Viewer<'_>, action: &str, label: &str, class: &str) -> String {
    format!(
        "<form class=\"inline\" method=\"post\" action=\"{}\">{}\
         <button type=\"submit\" class=\"{class}\">{}</button></form>",
        esc(action),
        csrf_field(viewer.csrf),
        esc(label)
    )
}

/// A table: its header cells (escaped here; all empty: no header row) and its rows of cells (HTML already).
pub fn table(id: &str, head: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = format!("<table id=\"{}\">", esc(id));
    // A table of facts (no header text) has no header row.
    if head.iter().any(|h| !h.is_empty()) {
        s.push_str("<thead><tr>");
        for h in head {
            let _ = write!(s, "<th>{}</th>", esc(h));
        }
        s.push_str("</tr></thead>");
    }
    s.push_str("<tbody>");
    for row in rows {
        s.push_str("<tr>");
        for cell in row {
            let _ = write!(s, "<td>{cell}</td>");
        }
        s.push_str("</tr>");
    }
    if rows.is_empty() {
        let _ = write!(s, "<tr><td colspan=\"{}\" class=\"none\">none</td></tr>", head.len().max(1));
    }
    s.push_str("</tbody></table>");
    s
}

/// A progress bar of `done` out of `total`, with its figures beside it.
pub fn progress(done: u64, total: u64, label: &str) -> String {
    format!(
        "<progress value=\"{done}\" max=\"{}\">{done}/{total}</progress> <span class=\"figures\">{}</span>",
        total.max(1),
        esc(label)
    )
}

/// A short label in a coloured box: `kind` is its class (`ok`, `warn`, `bad`, `info`).
pub fn badge(kind: &str, text: &str) -> String {
    format!("<span class=\"badge {kind}\">{}</span>", esc(text))
}

/// A link.
pub fn link(href: &str, text: &str) -> String {
    format!("<a href=\"{}\">{}</a>", esc(href), esc(text))
}

/// An optional text, or a dash.
pub fn or_dash(text: Option<&str>) -> String {
    text.map_or_else(|| "–".to_owned(), esc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_urls_are_escaped() {
        assert_eq!(esc("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(url_part("site 1/ä&x"), "site%201%2F%C3%A4%26x");
        let v = Viewer { name: "<n>", role: "viewer", csrf: "c\"x", may_change: false };
        let p = page("T<", Some(&v), None, "<p>b</p>");
        assert!(p.contains("<title>T&lt; · edge-cloud</title>") && p.contains("&lt;n&gt; (viewer)"), "{p}");
        assert!(p.contains("value=\"c&quot;x\""), "{p}");
        assert!(!p.contains("<script"), "no script, ever");
        assert!(table("t", &["a"], &[]).contains("none"));
    }
}
