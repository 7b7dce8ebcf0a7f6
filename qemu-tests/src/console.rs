//! Turning the raw serial stream of a boot into plain text lines.
//!
//! OVMF and GRUB drive the serial port as a VT100: colours, screen clears and cursor jumps. Tests want lines such as
//! `EDGE-DECISION slot=A tries=2`, so escape sequences and carriage returns are removed, and a cursor jump or screen
//! clear starts a new line, because the text after it was meant to appear elsewhere on the screen.

/// The plain text of a raw console stream (lossy UTF-8, escape sequences removed).
pub fn clean(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                // CSI: parameters and intermediates, then one final byte in 0x40..=0x7e.
                Some('[') => {
                    let mut last = None;
                    for next in chars.by_ref() {
                        if ('\u{40}'..='\u{7e}').contains(&next) {
                            last = Some(next);
                            break;
                        }
                    }
                    if matches!(last, Some('H' | 'f' | 'J')) && !out.is_empty() && !out.ends_with('\n') {
                        out.push('\n');
                    }
                }
                // Character set designation: one more byte.
                Some('(' | ')' | '*' | '+') => {
                    chars.next();
                }
                // Any other two-byte escape (ESC 7, ESC c, ...).
                _ => {}
            },
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The last `n_lines` lines of `text`.
pub fn tail(text: &str, n_lines: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n_lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &[u8], expected: &str) {
        assert_eq!(clean(raw), expected, "raw: {raw:?}");
    }

    #[test]
    fn cleans_what_ovmf_and_grub_send() {
        check(b"plain\r\n", "plain\n");
        check(b"\x1b[0m\x1b[30m\x1b[47mWelcome to GRUB!\n\r", "Welcome to GRUB!\n");
        check(b"root=hd0\n\r\x1b[H\x1b[J\x1b[1;1HEDGE-START\n\r", "root=hd0\nEDGE-START\n");
        check(b"Press ESC in 2\x1b[07;01HPress ESC in 1", "Press ESC in 2\nPress ESC in 1");
        check(b"\x1b[2J\x1b[01;01H\x1b[=3h\x1b[?25lBdsDxe\r\n", "BdsDxe\n");
        check(b"\x1b(Bx\x1b7y\x1b", "xy");
        check(b"bad \xff byte", "bad \u{fffd} byte");
    }

    #[test]
    fn tails() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }
}
