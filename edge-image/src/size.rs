//! The one syntax for a size written by a person, on the command line (`--chunk-size 64K`) and in the disk layout
//! file (`size = "64MiB"`): a whole number of bytes, optionally followed by a binary unit. Kept apart so that both
//! places accept exactly the same words and say the same thing about a bad one.

/// The units, each a power of 1024: the IEC name and the one-letter short form `dd` and `truncate` use.
const UNITS: [(&str, &str, u32); 4] = [("KiB", "K", 10), ("MiB", "M", 20), ("GiB", "G", 30), ("TiB", "T", 40)];

/// Parses `text`: digits, then optional spaces and a unit (`KiB`, `MiB`, `GiB`, `TiB`, or `K`, `M`, `G`, `T` in
/// either case, all powers of 1024). Decimal units (`MB`) are refused rather than guessed at. The error says what
/// was expected.
pub fn parse(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (num, unit) = text.split_at(digits);
    let unit = unit.trim_start();
    let shift = if unit.is_empty() {
        0
    } else {
        UNITS
            .iter()
            .find(|(iec, short, _)| unit == *iec || unit.eq_ignore_ascii_case(short))
            .map(|(_, _, shift)| *shift)
            .ok_or_else(|| format!("{text:?} is not a size like 4096, 64K, 64KiB or 1GiB"))?
    };
    let n: u64 = num.parse().map_err(|_| format!("{text:?} is not a size like 4096, 64K, 64KiB or 1GiB"))?;
    n.checked_mul(1 << shift).ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_bytes_or_binary_units() {
        let check = |s: &str, want: Option<u64>| assert_eq!(parse(s).ok(), want, "{s}");
        check("4096", Some(4096));
        check("64K", Some(64 << 10));
        check("64k", Some(64 << 10));
        check("64KiB", Some(64 << 10));
        check("1M", Some(1 << 20));
        check("64MiB", Some(64 << 20));
        check("2 GiB", Some(2 << 30));
        check("1TiB", Some(1 << 40));
        check("1t", Some(1 << 40));
        check("64MB", None);
        check("64kib", None);
        check("MiB", None);
        check("", None);
        check("-1MiB", None);
        check("1.5M", None);
        check("99999999999TiB", None);
    }
}
