//! One benchmark case as `--cases` spells it (`mtu<N>-loss<PCT>[-oh<PCT>][-rate<BITS>]`), bundle
//! sizes as `--size` spells them, and the sender's rate flags for a case.

use anyhow::{Context, bail};

/// One case: the diode's MTU and emulated loss, the sender's repair overhead and rate.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub mtu: u32,
    /// Percent of datagrams the diode drops (nft).
    pub loss: f64,
    pub overhead: u32,
    /// sluice-send's `--rate` (`0` = unpaced), or `default`: no `--rate` at all.
    pub rate: String,
}

/// Parses `mtu<N>-loss<PCT>[-oh<PCT>][-rate<BITS>]`; parts not given come from the flags.
pub fn parse_case(s: &str, overhead: u32, rate: &str) -> anyhow::Result<Case> {
    let mut c = Case {
        name: s.to_string(),
        mtu: 1500,
        loss: 0.0,
        overhead,
        rate: rate.to_string(),
    };
    for tok in s.split('-') {
        if let Some(v) = tok.strip_prefix("mtu") {
            c.mtu = v.parse().with_context(|| format!("case {s}: mtu"))?;
        } else if let Some(v) = tok.strip_prefix("loss") {
            c.loss = v.parse().with_context(|| format!("case {s}: loss"))?;
        } else if let Some(v) = tok.strip_prefix("oh") {
            c.overhead = v.parse().with_context(|| format!("case {s}: oh"))?;
        } else if let Some(v) = tok.strip_prefix("rate") {
            c.rate = v.to_string();
        } else {
            bail!("case {s:?}: unknown part {tok:?} (mtu<N>, loss<PCT>, oh<PCT>, rate<BITS>)");
        }
    }
    Ok(c)
}

/// sluice-send's rate flags for a case's rate: none for `default`.
pub fn rate_args(rate: &str) -> Vec<String> {
    if rate == "default" {
        Vec::new()
    } else {
        vec!["--rate".into(), rate.into()]
    }
}

/// `256M`, `1G`, `64k` (binary multiples).
pub fn parse_size(s: &str) -> anyhow::Result<u64> {
    let t = s.trim();
    let (num, mul) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m' | 'M') => (&t[..t.len() - 1], 1 << 20),
        Some('g' | 'G') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: f64 = num.parse().with_context(|| format!("size {s:?}"))?;
    Ok((n * mul as f64) as u64)
}
