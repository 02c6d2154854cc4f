//! Byte sizes as people type and read them: `10MiB`, `1.5 GiB`, `500MB`, `1048576`.

/// The units a size may carry, lower-cased: IEC (`KiB`, and `K` alone) count in 1024s, SI
/// (`kB`) in 1000s.
const UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("b", 1),
    ("k", 1 << 10),
    ("kib", 1 << 10),
    ("kb", 1_000),
    ("m", 1 << 20),
    ("mib", 1 << 20),
    ("mb", 1_000_000),
    ("g", 1 << 30),
    ("gib", 1 << 30),
    ("gb", 1_000_000_000),
    ("t", 1 << 40),
    ("tib", 1 << 40),
    ("tb", 1_000_000_000_000),
    ("p", 1 << 50),
    ("pib", 1 << 50),
    ("pb", 1_000_000_000_000_000),
];

/// The IEC units [`exact_bytes`] writes, largest first.
const IEC: &[(&str, u64)] = &[("PiB", 1 << 50), ("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];

/// `"10MiB"` → 10485760. A number (a decimal point allowed) and an optional unit, spaces
/// and case aside; the result must be a whole number of bytes.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    const NOT_A_SIZE: &str = "not a size: write e.g. 10MiB, 1.5GiB or a number of bytes";
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = format!("{whole}{fraction}");
    if digits.is_empty() || fraction.len() > 18 {
        return Err(NOT_A_SIZE.to_owned());
    }
    let digits: u128 = digits.parse().map_err(|_| NOT_A_SIZE)?;
    let unit = unit.trim().to_ascii_lowercase();
    let Some(&(_, multiplier)) = UNITS.iter().find(|(name, _)| *name == unit) else {
        return Err(format!("unknown unit {unit:?} (use B, KiB, MiB, GiB, TiB, kB, MB, GB, TB)"));
    };
    let scale = 10u128.pow(fraction.len() as u32);
    let bytes = digits.checked_mul(u128::from(multiplier)).ok_or("too large")?;
    if !bytes.is_multiple_of(scale) {
        return Err("not a whole number of bytes".to_owned());
    }
    u64::try_from(bytes / scale).map_err(|_| "too large".to_owned())
}

/// 10485760 → `"10MiB"`: the largest IEC unit that divides it, else plain bytes. What
/// [`parse_bytes`] reads back to the same number.
pub fn exact_bytes(bytes: u64) -> String {
    match IEC.iter().find(|(_, size)| bytes > 0 && bytes.is_multiple_of(*size)) {
        Some((unit, size)) => format!("{}{unit}", bytes / size),
        None => bytes.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_with_iec_and_si_units_in_any_case_and_spacing() {
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert_eq!(parse_bytes("10MiB"), Ok(10 << 20));
        assert_eq!(parse_bytes(" 10 mib "), Ok(10 << 20));
        assert_eq!(parse_bytes("10M"), Ok(10 << 20), "a bare letter is the IEC unit");
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_bytes("500MB"), Ok(500_000_000));
        assert_eq!(parse_bytes("2kB"), Ok(2_000));
        assert_eq!(parse_bytes("512b"), Ok(512));
        assert_eq!(parse_bytes("1PiB"), Ok(1 << 50));
        assert_eq!(parse_bytes("0"), Ok(0));
    }

    #[test]
    fn what_is_not_a_whole_size_is_refused_with_a_reason() {
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("MiB").unwrap_err().starts_with("not a size"));
        assert!(parse_bytes("ten").unwrap_err().starts_with("not a size"));
        assert!(parse_bytes("-1").is_err());
        assert!(parse_bytes("1.2.3MiB").is_err());
        assert!(parse_bytes("10 XB").unwrap_err().contains("unknown unit"));
        assert!(parse_bytes("0.1KiB").unwrap_err().contains("whole number of bytes"));
        assert!(parse_bytes("20000PiB").unwrap_err().contains("too large"));
        assert!(parse_bytes("99999999999999999999999999999999999999999").is_err());
    }

    #[test]
    fn exact_sizes_use_the_largest_unit_that_divides_and_read_back() {
        for (bytes, text) in [(10 << 20, "10MiB"), (1 << 30, "1GiB"), (3 << 29, "1536MiB"), (1000, "1000"), (0, "0")] {
            assert_eq!(exact_bytes(bytes), text);
            assert_eq!(parse_bytes(text), Ok(bytes));
        }
    }
}
