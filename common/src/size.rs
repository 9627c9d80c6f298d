//! Sizes and rates as operators type them, for every size flag of both binaries and `--rate`
//! (docs/configuration.md, "Sizes and rates", is the one place the syntax is documented).
//!
//! - A number, optionally with a fraction: `4096`, `1.5`. No sign, no exponent.
//! - An optional prefix: `k M G T` are powers of **1000** (as `--rate` always read them, and as
//!   disk makers count), `Ki Mi Gi Ti` powers of **1024**. Letters are case-insensitive.
//! - For sizes, an optional trailing `B` (bytes): `700M` = `700MB` = 700 000 000 bytes, `1.5GiB`
//!   = 1 610 612 736 bytes. A lowercase `b` after a prefix (`1Gb`) reads as bits and is refused.
//! - For rates (bits per second) no `B`: `800M` is 800 000 000 bit/s.
//! - The value must be a whole number of bytes (or bits): `1.0000001k` is refused, not rounded.
//!
//! Flags whose value is counted in a unit (`sluice-recv --memory` in MiB, `--staging-quota` in
//! GiB) keep reading a bare number in that unit; with a prefix the size is converted to the
//! nearest whole unit ([`parse_in_unit`]), so `--memory 1G` is 954 MiB.

/// Why a size or rate was refused; the message says what to type instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error(
        "{0:?} is not a size: use a number with an optional suffix, e.g. 700M, 1G, 1.5GiB, 4096 \
         (k/M/G/T = 1000ⁿ, Ki/Mi/Gi/Ti = 1024ⁿ)"
    )]
    NotASize(String),
    #[error("{0:?} is not a rate: use bits per second with an optional k/M/G suffix, e.g. 800M")]
    NotARate(String),
    #[error(
        "{0:?} ends in a lowercase b, which reads as bits; sizes are bytes: write B or nothing (e.g. 1G or 1GB)"
    )]
    Bits(String),
    #[error("{0:?} ends in B, but a rate is in bits per second: 100 MB/s is 800M")]
    Bytes(String),
    #[error("{0:?} is not a whole number (fractions must come out to whole bytes or bits)")]
    Fraction(String),
    #[error("{0:?} is too large (at most 16 EiB)")]
    TooLarge(String),
    #[error("{0:?} is less than half of this option's unit ({1}); give at least 1{1}")]
    BelowUnit(String, &'static str),
}

/// What the value counts: a size may end in `B`, a rate may not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Size,
    Rate,
}

/// Parses a size in bytes: `700M`, `1G`, `1.5GiB`, `4096`, `64KiB`, `2TB`.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    parse(text, Kind::Size).map(|(v, _)| v)
}

/// [`parse_size`] for `usize` options (socket buffers, datagram lengths).
pub fn parse_size_usize(text: &str) -> Result<usize, SizeError> {
    let v = parse_size(text)?;
    usize::try_from(v).map_err(|_| SizeError::TooLarge(text.to_string()))
}

/// Parses a rate in bits per second: `800M`, `1.5G`, `250k`, `0`.
pub fn parse_rate(text: &str) -> Result<u64, SizeError> {
    parse(text, Kind::Rate).map(|(v, _)| v)
}

/// A size for an option counted in units of `unit` bytes: a bare number is already in units;
/// with a prefix or `B` it is converted to the nearest whole unit (ties up). A value that rounds
/// to zero units is refused unless it is zero.
pub fn parse_in_unit(text: &str, unit: u64, unit_name: &'static str) -> Result<u64, SizeError> {
    let (value, suffixed) = parse(text, Kind::Size)?;
    if !suffixed {
        return Ok(value);
    }
    let unit = unit.max(1);
    let units = value / unit + u64::from(value % unit >= unit.div_ceil(2));
    if units == 0 && value != 0 {
        return Err(SizeError::BelowUnit(text.to_string(), unit_name));
    }
    Ok(units)
}

/// `--memory`-style options counted in MiB.
pub fn parse_mib(text: &str) -> Result<u64, SizeError> {
    parse_in_unit(text, 1 << 20, "MiB")
}

/// `--staging-quota`-style options counted in GiB.
pub fn parse_gib(text: &str) -> Result<u64, SizeError> {
    parse_in_unit(text, 1 << 30, "GiB")
}

/// `1500000000` → `"1.50 GB (1500000000 bytes)"`: decimal, as the parser reads `G`, with the
/// exact count so a message can be checked against `df -B1`.
pub fn describe_bytes(bytes: u64) -> String {
    const UNITS: [(&str, f64); 4] = [("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)];
    for (name, scale) in UNITS {
        if bytes as f64 >= scale {
            return format!("{:.2} {name} ({bytes} bytes)", bytes as f64 / scale);
        }
    }
    format!("{bytes} bytes")
}

/// The value and whether any suffix (prefix or `B`) was given.
fn parse(text: &str, kind: Kind) -> Result<(u64, bool), SizeError> {
    let not = || match kind {
        Kind::Size => SizeError::NotASize(text.to_string()),
        Kind::Rate => SizeError::NotARate(text.to_string()),
    };
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, suffix) = (&t[..split], t[split..].trim_start());
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    // At most 20 integer digits (as many as u64 has) and 18 fraction digits keep the arithmetic
    // below inside u128 whatever the prefix.
    if (int.is_empty() && frac.is_empty())
        || int.len() > 20
        || frac.len() > 18
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return Err(not());
    }
    let mut rest = suffix;
    if let Some(r) = rest.strip_suffix('B') {
        if kind == Kind::Rate {
            return Err(SizeError::Bytes(text.to_string()));
        }
        rest = r;
    } else if rest.len() > 1 && rest.ends_with('b') {
        return Err(match kind {
            Kind::Size => SizeError::Bits(text.to_string()),
            Kind::Rate => not(),
        });
    }
    let lower = rest.to_ascii_lowercase();
    let (prefix, binary) = match lower.strip_suffix('i') {
        Some(p) => (p, true),
        None => (lower.as_str(), false),
    };
    let power = match prefix {
        "" if !binary => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        _ => return Err(not()),
    };
    let base: u128 = if binary { 1024 } else { 1000 };
    let multiplier = base.pow(power);
    let int_value: u128 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| not())?
    };
    let frac_value: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| not())?
    };
    let frac_scale = 10u128.pow(frac.len() as u32);
    let frac_part = frac_value * multiplier;
    if frac_part % frac_scale != 0 {
        return Err(SizeError::Fraction(text.to_string()));
    }
    let total = int_value
        .checked_mul(multiplier)
        .and_then(|v| v.checked_add(frac_part / frac_scale))
        .ok_or_else(|| SizeError::TooLarge(text.to_string()))?;
    let value = u64::try_from(total).map_err(|_| SizeError::TooLarge(text.to_string()))?;
    Ok((value, !suffix.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_prefixes_are_powers_of_1000_and_binary_of_1024() {
        assert_eq!(parse_size("700M"), Ok(700_000_000));
        assert_eq!(parse_size("700MB"), Ok(700_000_000));
        assert_eq!(parse_size("1G"), Ok(1_000_000_000));
        assert_eq!(parse_size("1g"), Ok(1_000_000_000));
        assert_eq!(parse_size("1.5GiB"), Ok(1_610_612_736));
        assert_eq!(parse_size("1.5gi"), Ok(1_610_612_736));
        assert_eq!(parse_size("4095MiB"), Ok((4 << 30) - (1 << 20)));
        assert_eq!(parse_size("64KiB"), Ok(65_536));
        assert_eq!(parse_size("64k"), Ok(64_000));
        assert_eq!(parse_size("2TB"), Ok(2_000_000_000_000));
        assert_eq!(parse_size("1TiB"), Ok(1 << 40));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4096B"), Ok(4096));
        assert_eq!(parse_size(" 1.5 GiB "), Ok(1_610_612_736));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size(".5k"), Ok(500));
    }

    #[test]
    fn nonsense_bits_fractions_and_overflow_are_refused() {
        for bad in [
            "", "G", "fast", "-5M", "1e9", "1.2.3", "1X", "1iB", "1 M M", "0x10",
        ] {
            assert!(
                matches!(parse_size(bad), Err(SizeError::NotASize(_))),
                "{bad}"
            );
        }
        assert!(matches!(parse_size("1Gb"), Err(SizeError::Bits(_))));
        assert!(matches!(parse_size("0.3"), Err(SizeError::Fraction(_))));
        assert!(matches!(
            parse_size("1.0000001k"),
            Err(SizeError::Fraction(_))
        ));
        assert!(matches!(parse_size("17EiB"), Err(SizeError::NotASize(_))));
        assert!(matches!(
            parse_size("20000000T"),
            Err(SizeError::TooLarge(_))
        ));
        assert!(matches!(
            parse_size("18446744073709551616"),
            Err(SizeError::TooLarge(_))
        ));
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
    }

    #[test]
    fn rates_share_the_parser_but_not_the_byte_suffix() {
        assert_eq!(parse_rate("800M"), Ok(800_000_000));
        assert_eq!(parse_rate("1.5G"), Ok(1_500_000_000));
        assert_eq!(parse_rate("250k"), Ok(250_000));
        assert_eq!(parse_rate("0"), Ok(0));
        assert!(matches!(parse_rate("100MB"), Err(SizeError::Bytes(_))));
        assert!(matches!(parse_rate("fast"), Err(SizeError::NotARate(_))));
        assert!(matches!(parse_rate("-5M"), Err(SizeError::NotARate(_))));
    }

    #[test]
    fn unit_counted_options_keep_bare_numbers_and_round_suffixed_ones() {
        assert_eq!(parse_mib("48"), Ok(48));
        assert_eq!(parse_mib("1G"), Ok(954)); // 953.67 MiB
        assert_eq!(parse_mib("1GiB"), Ok(1024));
        assert_eq!(parse_mib("512MiB"), Ok(512));
        assert_eq!(parse_gib("128"), Ok(128));
        assert_eq!(parse_gib("5G"), Ok(5)); // 4.66 GiB
        assert_eq!(parse_gib("1TiB"), Ok(1024));
        assert!(matches!(parse_gib("100M"), Err(SizeError::BelowUnit(..))));
        assert_eq!(parse_gib("0G"), Ok(0));
    }

    #[test]
    fn described_sizes_carry_the_exact_count() {
        assert_eq!(describe_bytes(1_500_000_000), "1.50 GB (1500000000 bytes)");
        assert_eq!(describe_bytes(999), "999 bytes");
    }
}
