//! What `sluice-bench` concludes from one case's row: how close the sender came to the rate it
//! was set to, and whether the case failed (the bundle did not arrive intact) and why. A failed
//! case makes the whole run exit non-zero with [`failure`]'s message, so a receiver that drops
//! beyond what the repair covers cannot hide in a table of figures (issue 15).

use serde_json::Value;

/// Achieved wire rate ÷ set rate, from `sluice-send udp --json`'s summary: its
/// `wire_mbit_per_sec` (frames + 28 bytes IP/UDP each, over its own send time) and
/// `rate_limit_bits_per_sec`. `None` when unpaced (no set rate) or the summary is missing.
pub fn rate_ratio(send_json: &Value) -> Option<f64> {
    let set = send_json["rate_limit_bits_per_sec"].as_f64()?;
    let wire = send_json["wire_mbit_per_sec"].as_f64()?;
    (set > 0.0).then(|| wire * 1e6 / set)
}

/// Why a case failed, for the operator; `None` when the bundle arrived intact. Reads the row's
/// `intact`, `outcome`, `rcvbuf_errors` (the receiver namespace's UDP `RcvbufErrors` delta: a
/// socket that overflowed), `nft_loss_drops`, `overhead_percent`, `case`, `run` and `size`.
pub fn failure(row: &Value) -> Option<String> {
    if row["intact"] == true {
        return None;
    }
    let case = row["case"].as_str().unwrap_or("?");
    let run = row["run"].as_u64().unwrap_or(0);
    let size = row["size"].as_str().unwrap_or("?");
    let outcome = row["outcome"].as_str().unwrap_or("no decision");
    let oh = row["overhead_percent"].as_u64().unwrap_or(0);
    let sock = row["rcvbuf_errors"].as_u64().unwrap_or(0);
    let what = format!("case {case} run {run} size {size}: bundle not intact (outcome: {outcome})");
    Some(if row["outcome"] == "accepted" {
        format!("{what}: accepted but the received files differ from the source; this is a bug")
    } else if sock > 0 {
        format!(
            "{what}: the receiver's socket overflowed {sock} times (UDP RcvbufErrors; each can be \
             a whole GRO train), losing more than the {oh} % repair covers; pace the sender \
             (-rate<BITS> on the case, or the default without --rate) below what the receiver \
             keeps up with"
        )
    } else {
        let nft = row["nft_loss_drops"].as_u64().unwrap_or(0);
        format!(
            "{what} with no socket overflow ({nft} datagrams dropped by the emulated loss): more \
             loss than the {oh} % repair covers, or a receiver or sender error (see the logs with \
             --keep)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ratio_is_wire_over_set_and_absent_unpaced() {
        let s = json!({"rate_limit_bits_per_sec": 1_600_000_000u64, "wire_mbit_per_sec": 1560.0});
        assert!((rate_ratio(&s).unwrap() - 0.975).abs() < 1e-9);
        let unpaced = json!({"rate_limit_bits_per_sec": null, "wire_mbit_per_sec": 2000.0});
        assert_eq!(rate_ratio(&unpaced), None);
        assert_eq!(rate_ratio(&Value::Null), None);
    }

    #[test]
    fn socket_overflow_past_the_repair_fails_loudly() {
        let base = json!({"case": "mtu1500-loss5-rate0", "run": 1, "size": "1G",
            "overhead_percent": 10, "nft_loss_drops": 41_000});
        let mut ok = base.clone();
        ok["intact"] = json!(true);
        ok["rcvbuf_errors"] = json!(12);
        assert_eq!(failure(&ok), None);

        let mut lost = base.clone();
        lost["intact"] = json!(false);
        lost["rcvbuf_errors"] = json!(60_730);
        let msg = failure(&lost).unwrap();
        assert!(msg.contains("mtu1500-loss5-rate0"), "{msg}");
        assert!(msg.contains("overflowed 60730 times"), "{msg}");
        assert!(msg.contains("10 % repair"), "{msg}");
        assert!(msg.contains("pace the sender"), "{msg}");

        let mut link = base;
        link["intact"] = json!(false);
        link["rcvbuf_errors"] = json!(0);
        assert!(failure(&link).unwrap().contains("no socket overflow"));
    }
}
