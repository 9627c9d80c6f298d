//! Diode profiles: the defaults a link imposes (MTU, line rate, pacing, repair overhead), kept in
//! `hardware/profiles/*.toml` and parsed here from text the caller read.
//!
//! A profile only supplies defaults; explicit flags and config keys override it. Unknown keys are
//! errors, so a typo in a profile cannot silently fall back to a default.

use serde::Deserialize;

/// Largest profile file accepted; profiles are a few hundred bytes.
pub const MAX_PROFILE_BYTES: usize = 64 * 1024;

/// One diode profile. Field meanings and units are documented in hardware/README.md.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    pub description: String,
    /// Interface MTU on both ends of the link.
    pub mtu: u32,
    /// The link's raw line rate in bits per second.
    pub line_rate_bps: u64,
    /// Largest UDP payload per datagram (MTU − 28 for IPv4 + UDP headers).
    pub datagram_bytes: u32,
    pub recommended_overhead_percent: u32,
    /// Pacing target in bits per second, a little under the line rate; 0 = unpaced (media).
    pub recommended_rate_bps: u64,
    pub window_blocks: u32,
    pub passes: u16,
    #[serde(default)]
    pub notes: Option<String>,
}

/// The profiles shipped in `hardware/profiles`, compiled in so `--profile NAME` works on a host
/// where only the binary was installed; a file of the same name in a profile directory wins.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "gbe-fibre-1500",
        include_str!("../../hardware/profiles/gbe-fibre-1500.toml"),
    ),
    (
        "10gbe-jumbo-9000",
        include_str!("../../hardware/profiles/10gbe-jumbo-9000.toml"),
    ),
    (
        "loopback-test",
        include_str!("../../hardware/profiles/loopback-test.toml"),
    ),
    (
        "usb-media",
        include_str!("../../hardware/profiles/usb-media.toml"),
    ),
];

/// The text of the built-in profile `name`, if there is one.
pub fn builtin(name: &str) -> Option<&'static str> {
    BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// Why a profile was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("profile is {0} bytes; the limit is {MAX_PROFILE_BYTES}")]
    TooLarge(usize),
    #[error("profile is not valid TOML for a diode profile: {0}")]
    Parse(String),
    #[error("profile value out of range: {0}")]
    OutOfRange(String),
}

impl Profile {
    /// Parses and validates a profile.
    pub fn parse(text: &str) -> Result<Profile, ProfileError> {
        if text.len() > MAX_PROFILE_BYTES {
            return Err(ProfileError::TooLarge(text.len()));
        }
        let profile: Profile =
            toml::from_str(text).map_err(|e| ProfileError::Parse(e.to_string()))?;
        profile.validate()?;
        Ok(profile)
    }

    fn validate(&self) -> Result<(), ProfileError> {
        let out = |what: &str| Err(ProfileError::OutOfRange(what.to_string()));
        // 600: the smallest MTU whose symbols (MTU − 86) a receiver accepts (≥ 512 bytes).
        if !(600..=65_535).contains(&self.mtu) {
            return out("mtu must be 600..=65535");
        }
        if self.datagram_bytes < 128 || self.datagram_bytes > self.mtu.saturating_sub(28) {
            return out("datagram_bytes must be at least 128 and at most mtu - 28");
        }
        if self.line_rate_bps == 0 {
            return out("line_rate_bps must be positive");
        }
        if self.recommended_rate_bps > self.line_rate_bps {
            return out(
                "recommended_rate_bps must not exceed line_rate_bps (a diode has no back-pressure)",
            );
        }
        if self.recommended_overhead_percent > 400 {
            return out("recommended_overhead_percent must be at most 400");
        }
        if !(1..=1024).contains(&self.window_blocks) {
            return out("window_blocks must be 1..=1024");
        }
        if !(1..=100).contains(&self.passes) {
            return out("passes must be 1..=100");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "gbe"
description = "1 GbE fibre"
mtu = 1500
line_rate_bps = 1000000000
datagram_bytes = 1472
recommended_overhead_percent = 10
recommended_rate_bps = 950000000
window_blocks = 16
passes = 1
"#;

    #[test]
    fn parses_a_profile() {
        let p = Profile::parse(GOOD).unwrap();
        assert_eq!(p.datagram_bytes, 1472);
        assert_eq!(p.notes, None);
    }

    /// Every built-in profile must parse: an operator's `--profile NAME` must never be the first
    /// to find a typo. (sender's `profile_lookup` test checks every shipped file is built in.)
    #[test]
    fn shipped_profiles_parse() {
        for &(name, text) in BUILTIN {
            let p = Profile::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(p.name, name);
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let typo = format!("{GOOD}\nwindow_blokcs = 3\n");
        assert!(
            matches!(Profile::parse(&typo), Err(ProfileError::Parse(m)) if m.contains("window_blokcs"))
        );
        let too_fast = GOOD.replace("950000000", "2000000000");
        assert!(matches!(
            Profile::parse(&too_fast),
            Err(ProfileError::OutOfRange(_))
        ));
        let big_datagram = GOOD.replace("1472", "1500");
        assert!(Profile::parse(&big_datagram).is_err());
    }
}
