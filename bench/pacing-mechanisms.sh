#!/bin/bash
# Pacing mechanisms on the namespace diode (bench/README.md, "Pacing that keeps its budget"):
# udpblast GSO blasts of 1472-byte datagrams paced by each mechanism, 3 s each, the wire rate
# as the receiver saw it divided by the set rate. Needs root and a release udpblast:
#   cargo build --release -p sluice-bench --bin udpblast
#   sudo RATES="200M 800M 1600M" MODES="user-drop user fq txtime" bench/pacing-mechanisms.sh
# fq and txtime pace only when the kernel has sch_fq (the script says when it has not).
set -u
cd "$(dirname "$0")/.."
B=${UDPBLAST:-target/release/udpblast}
export SLUICE_NS_PREFIX=slpace$$
bash hardware/diode-sim.sh up --mtu 1500 >/dev/null || exit 1
trap 'bash hardware/diode-sim.sh down >/dev/null 2>&1' EXIT
TX=${SLUICE_NS_PREFIX}-tx RX=${SLUICE_NS_PREFIX}-rx
ip netns exec "$TX" tc qdisc replace dev sl-tx root fq ||
  echo "no fq qdisc here: fq and txtime rows are unpaced" >&2
port=9300
out=$(mktemp -d)
for rate in ${RATES:-200M 800M 1600M}; do
  for mode in ${MODES:-user-drop user fq txtime}; do
    port=$((port + 1))
    ip netns exec "$RX" "$B" recv 10.231.0.2:$port 12 --rcvbuf 67108864 --idle-exit 1 --json \
      >"$out/recv.json" 2>/dev/null &
    rp=$!
    sleep 0.3
    ip netns exec "$TX" "$B" send 10.231.0.2:$port --mode gso --secs 3 --sndbuf 8388608 \
      --pacing "$mode:$rate" --json >"$out/send.json"
    wait $rp
    python3 - "$mode" "$rate" "$out" <<'PY'
import json, sys
mode, rate, out = sys.argv[1:4]
s = json.load(open(f"{out}/send.json"))
r = json.load(open(f"{out}/recv.json"))
want = float(rate[:-1]) * {"k": 1e3, "M": 1e6, "G": 1e9}[rate[-1]]
wire = (r["received_bytes"] + 28 * r["received_datagrams"]) * 8 / max(r["secs"], 1e-9)
print(f"{mode:10} {rate:6} received {wire / 1e6:8.1f} Mbit/s  ratio {wire / want:.3f}  "
      f"loss {r['loss_percent']} %  sender cpu {s['cpu_secs']} s")
PY
  done
done
rm -rf "$out"
