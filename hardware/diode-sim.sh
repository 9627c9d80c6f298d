#!/usr/bin/env bash
# diode-sim.sh — a one-way "hardware data diode" emulated on one Linux machine.
#
#   low side (sender)                                   high side (receiver)
#   netns ${PREFIX}-tx  [${TX_IF} 10.231.0.1/30] ──veth──► [${RX_IF} 10.231.0.2/30]  netns ${PREFIX}-rx
#
# What makes it diode-like (see hardware/README.md):
#   * static, permanent neighbour entries on both ends and `arp off` on both veths: no ARP crosses;
#   * IPv6 disabled on both ends: no ND/MLD/RS chatter;
#   * nftables in the high side drops EVERY packet leaving toward the low side: an `inet` output
#     chain (counter `to_low_side`, the one tests assert reads 0) plus a `netdev` egress chain on the
#     veth (counter `egress_frames`, catches non-IP frames too); ICMP errors the high-side kernel
#     itself emits (port unreachable for a datagram nobody listened for) are counted apart in
#     `icmp_errors_to_low_side`, since they do not come from the receiver process;
#   * optional random loss on the receiving side (`--loss PCT`, counter `loss_drops`), optional
#     line rate (`--rate`, tc tbf on the sending veth), MTU on both ends (`--mtu`).
#
# GSO and loss: a UDP GSO sender hands veth one 64 KB "super-packet"; nftables would see it as ONE
# packet and drop 40+ datagrams at once. With --loss the script therefore runs
# `ethtool -K ${TX_IF} tx-udp-segmentation off` so the kernel segments before veth and loss is
# per datagram (a GSO sender still gets most of its speed-up, see the `--loss 5` row of the
# udpblast table in bench/README.md).
#
# Socket buffers: the script leaves sysctls alone. A receiver running as root should use
# SO_RCVBUFFORCE (sluice-recv and udpblast do); an unprivileged receiver needs
# net.core.rmem_max raised (hardware/sysctl/90-sluice.conf). `status` reports rmem_max.
#
# Usage:
#   diode-sim.sh up [--loss PCT] [--rate RATE] [--burst BYTES] [--mtu N] [--prefix P]
#   diode-sim.sh down [--prefix P]
#   diode-sim.sh status [--json] [--prefix P]
# Environment overrides (all optional):
#   SLUICE_NS_PREFIX (sluice)  -> namespaces ${P}-tx and ${P}-rx
#   SLUICE_TX_ADDR (10.231.0.1) SLUICE_RX_ADDR (10.231.0.2) SLUICE_PREFIXLEN (30)
#   SLUICE_TX_IF (sl-tx) SLUICE_RX_IF (sl-rx)   (the veth ends live only inside their namespaces,
#                                                so parallel pairs can reuse these names)
#   SLUICE_TX_MAC (02:73:6c:00:00:01) SLUICE_RX_MAC (02:73:6c:00:00:02)
set -euo pipefail

PREFIX="${SLUICE_NS_PREFIX:-sluice}"
TX_ADDR="${SLUICE_TX_ADDR:-10.231.0.1}"
RX_ADDR="${SLUICE_RX_ADDR:-10.231.0.2}"
PLEN="${SLUICE_PREFIXLEN:-30}"
TX_IF="${SLUICE_TX_IF:-sl-tx}"
RX_IF="${SLUICE_RX_IF:-sl-rx}"
TX_MAC="${SLUICE_TX_MAC:-02:73:6c:00:00:01}"
RX_MAC="${SLUICE_RX_MAC:-02:73:6c:00:00:02}"
TABLE="sluice_diode"
STATE_DIR="${SLUICE_STATE_DIR:-/run/sluice-diode}"

die() { echo "diode-sim: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2; exit 2; }

need_root() {
  [ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces, veth and nftables need CAP_NET_ADMIN); try: sudo $0 ${SUB:-}"
}
need_cmd() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found; install it (Debian: apt-get install -y $2)"; }

names() { TX_NS="${PREFIX}-tx"; RX_NS="${PREFIX}-rx"; STATE_FILE="${STATE_DIR}/${PREFIX}.env"; }

ns_exists() { ip netns list | awk '{print $1}' | grep -qx -- "$1"; }

# rate string (tc syntax: 100mbit, 1gbit, 500kbit, 12mbps, 1000000bit, plain number = bit/s) -> bit/s
rate_bps() {
  local v="$1" num unit
  num="$(printf '%s' "$v" | sed -E 's/^([0-9.]+).*/\1/')"
  unit="$(printf '%s' "$v" | sed -E 's/^[0-9.]+//' | tr '[:upper:]' '[:lower:]')"
  [[ "$num" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "bad --rate '$v'"
  case "$unit" in
    ""|bit) awk -v n="$num" 'BEGIN{printf "%d", n}' ;;
    kbit) awk -v n="$num" 'BEGIN{printf "%d", n*1000}' ;;
    mbit) awk -v n="$num" 'BEGIN{printf "%d", n*1000000}' ;;
    gbit) awk -v n="$num" 'BEGIN{printf "%d", n*1000000000}' ;;
    bps) awk -v n="$num" 'BEGIN{printf "%d", n*8}' ;;
    kbps) awk -v n="$num" 'BEGIN{printf "%d", n*8000}' ;;
    mbps) awk -v n="$num" 'BEGIN{printf "%d", n*8000000}' ;;
    gbps) awk -v n="$num" 'BEGIN{printf "%d", n*8000000000}' ;;
    *) die "bad --rate unit in '$v' (use bit, kbit, mbit, gbit, bps, kbps, mbps, gbps)" ;;
  esac
}

cmd_down() {
  need_root
  names
  # Deleting a namespace destroys the veth end inside it (and its peer), the nft table and the qdisc.
  if ns_exists "$RX_NS"; then ip netns del "$RX_NS"; fi
  if ns_exists "$TX_NS"; then ip netns del "$TX_NS"; fi
  rm -f "$STATE_FILE"
}

cmd_up() {
  local loss="" rate="" burst="" mtu=1500
  while [ $# -gt 0 ]; do
    case "$1" in
      --loss) loss="${2:?--loss needs PCT}"; shift 2 ;;
      --rate) rate="${2:?--rate needs RATE}"; shift 2 ;;
      --burst) burst="${2:?--burst needs BYTES}"; shift 2 ;;
      --mtu) mtu="${2:?--mtu needs N}"; shift 2 ;;
      --prefix) PREFIX="${2:?--prefix needs P}"; shift 2 ;;
      -h|--help) usage ;;
      *) die "up: unknown option '$1'" ;;
    esac
  done
  need_root
  need_cmd ip iproute2
  need_cmd nft nftables
  if ! [[ "$mtu" =~ ^[0-9]+$ ]] || [ "$mtu" -lt 576 ] || [ "$mtu" -gt 65535 ]; then
    die "bad --mtu '$mtu' (576..65535)"
  fi
  local loss_bp=0
  if [ -n "$loss" ]; then
    [[ "$loss" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "bad --loss '$loss' (percent, e.g. 5 or 0.5)"
    # basis points so fractional percentages work: numgen random mod 10000 < loss*100
    loss_bp="$(awk -v p="$loss" 'BEGIN{printf "%d", p*100 + 0.5}')"
    [ "$loss_bp" -le 10000 ] || die "--loss must be <= 100"
    need_cmd ethtool ethtool
  fi
  [ -z "$rate" ] || need_cmd tc iproute2
  names
  if [ "${#TX_IF}" -gt 15 ] || [ "${#RX_IF}" -gt 15 ]; then die "interface names must be <= 15 characters"; fi

  # Clean whatever a previous (possibly half-made) run left behind.
  cmd_down
  trap 'echo "diode-sim: setup failed, removing partial setup" >&2; cmd_down' ERR

  ip netns add "$TX_NS"
  ip netns add "$RX_NS"
  for ns in "$TX_NS" "$RX_NS"; do
    # New interfaces inherit "default": no IPv6 means no router solicitations / ND / MLD on the link.
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    ip -n "$ns" link set lo up
  done
  # Create the pair directly inside the namespaces: the names never appear in the root namespace.
  ip -n "$TX_NS" link add "$TX_IF" address "$TX_MAC" type veth peer name "$RX_IF" address "$RX_MAC" netns "$RX_NS"
  ip -n "$TX_NS" link set "$TX_IF" mtu "$mtu" arp off
  ip -n "$RX_NS" link set "$RX_IF" mtu "$mtu" arp off
  ip -n "$TX_NS" addr add "${TX_ADDR}/${PLEN}" dev "$TX_IF"
  ip -n "$RX_NS" addr add "${RX_ADDR}/${PLEN}" dev "$RX_IF"
  # Static neighbours: the low side can never learn the high side's MAC over a diode.
  ip -n "$TX_NS" neigh replace "$RX_ADDR" lladdr "$RX_MAC" dev "$TX_IF" nud permanent
  ip -n "$RX_NS" neigh replace "$TX_ADDR" lladdr "$TX_MAC" dev "$RX_IF" nud permanent

  # One-way enforcement and loss, in the high-side namespace.
  {
    echo "table inet ${TABLE} {"
    echo "  counter to_low_side { }"
    echo "  counter icmp_errors_to_low_side { }"
    echo "  counter loss_drops { }"
    echo "  chain output {"
    echo "    type filter hook output priority 0; policy accept;"
    # ICMP errors the high side's KERNEL generates (port unreachable for a datagram that arrived
    # while nothing listened) are counted apart: they say nothing about the receiver process.
    echo "    oifname \"${RX_IF}\" icmp type { destination-unreachable, time-exceeded, parameter-problem } counter name icmp_errors_to_low_side drop"
    echo "    oifname \"${RX_IF}\" counter name to_low_side drop"
    echo "    ip daddr ${TX_ADDR} counter name to_low_side drop"
    echo "  }"
    if [ "$loss_bp" -gt 0 ]; then
      echo "  chain input {"
      echo "    type filter hook input priority 0; policy accept;"
      echo "    iifname \"${RX_IF}\" numgen random mod 10000 < ${loss_bp} counter name loss_drops drop"
      echo "  }"
    fi
    echo "}"
    echo "table netdev ${TABLE} {"
    echo "  counter egress_frames { }"
    echo "  chain egress {"
    echo "    type filter hook egress device \"${RX_IF}\" priority 0; policy accept;"
    echo "    counter name egress_frames drop"
    echo "  }"
    echo "}"
  } | ip netns exec "$RX_NS" nft -f -

  if [ -n "$loss" ]; then
    # Segment UDP GSO batches before veth so nft drops single datagrams, not 64 KB bursts.
    ip netns exec "$TX_NS" ethtool -K "$TX_IF" tx-udp-segmentation off >/dev/null 2>&1 \
      || echo "diode-sim: warning: could not turn tx-udp-segmentation off; GSO batches will be lost whole" >&2
  fi
  if [ -n "$rate" ]; then
    local bps
    bps="$(rate_bps "$rate")"
    if [ -z "$burst" ]; then
      # 10 ms of line rate, at least 64 KiB + MTU so one GSO super-packet fits in the bucket.
      burst="$(awk -v b="$bps" -v m="$mtu" 'BEGIN{x=b/8/100; y=65536+m; printf "%d", (x>y?x:y)}')"
    fi
    ip netns exec "$TX_NS" tc qdisc replace dev "$TX_IF" root tbf rate "${bps}bit" burst "$burst" latency 100ms
  fi
  ip -n "$TX_NS" link set "$TX_IF" up
  ip -n "$RX_NS" link set "$RX_IF" up
  trap - ERR

  mkdir -p "$STATE_DIR"
  cat >"$STATE_FILE" <<EOF
tx_ns=${TX_NS}
rx_ns=${RX_NS}
tx_if=${TX_IF}
rx_if=${RX_IF}
tx_addr=${TX_ADDR}
rx_addr=${RX_ADDR}
mtu=${mtu}
loss=${loss:-0}
rate=${rate}
EOF
  echo "diode-sim: up: ${TX_NS}(${TX_IF} ${TX_ADDR}) -> ${RX_NS}(${RX_IF} ${RX_ADDR}) mtu ${mtu} loss ${loss:-0}% rate ${rate:-unlimited}" >&2
  local rmem_max
  rmem_max="$(cat /proc/sys/net/core/rmem_max)"
  if [ "$rmem_max" -lt 33554432 ]; then
    echo "diode-sim: note: net.core.rmem_max=${rmem_max} (< 32 MiB); left unchanged. Receivers running as root use SO_RCVBUFFORCE; others need hardware/sysctl/90-sluice.conf" >&2
  fi
}

# counter NAME in FAMILY -> "packets bytes" (0 0 if absent)
counter() {
  local family="$1" name="$2" out
  out="$(ip netns exec "$RX_NS" nft list counter "$family" "$TABLE" "$name" 2>/dev/null || true)"
  local p b
  p="$(printf '%s\n' "$out" | sed -nE 's/.*packets ([0-9]+) bytes ([0-9]+).*/\1/p' | head -n1)"
  b="$(printf '%s\n' "$out" | sed -nE 's/.*packets ([0-9]+) bytes ([0-9]+).*/\2/p' | head -n1)"
  echo "${p:-0} ${b:-0}"
}

cmd_status() {
  local json=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --json) json=1; shift ;;
      --prefix) PREFIX="${2:?--prefix needs P}"; shift 2 ;;
      -h|--help) usage ;;
      *) die "status: unknown option '$1'" ;;
    esac
  done
  need_root
  names
  local up=false mtu=0 loss=0 rate=""
  if ns_exists "$TX_NS" && ns_exists "$RX_NS"; then up=true; fi
  if [ -f "$STATE_FILE" ]; then
    mtu="$(sed -n 's/^mtu=//p' "$STATE_FILE")"
    loss="$(sed -n 's/^loss=//p' "$STATE_FILE")"
    rate="$(sed -n 's/^rate=//p' "$STATE_FILE")"
  fi
  local lp lb ep eb fp fb ip_ ib
  if [ "$up" = true ]; then
    read -r lp lb < <(counter inet to_low_side)
    read -r ip_ ib < <(counter inet icmp_errors_to_low_side)
    read -r ep eb < <(counter inet loss_drops)
    read -r fp fb < <(counter netdev egress_frames)
  else
    lp=0 lb=0 ep=0 eb=0 fp=0 fb=0 ip_=0 ib=0
  fi
  local rmem_max
  rmem_max="$(cat /proc/sys/net/core/rmem_max)"
  if [ "$json" -eq 1 ]; then
    printf '{"up":%s,"tx_ns":"%s","rx_ns":"%s","tx_if":"%s","rx_if":"%s","tx_addr":"%s","rx_addr":"%s","mtu":%s,"loss_percent":%s,"rate":"%s",' \
      "$up" "$TX_NS" "$RX_NS" "$TX_IF" "$RX_IF" "$TX_ADDR" "$RX_ADDR" "${mtu:-0}" "${loss:-0}" "$rate"
    printf '"egress_to_low_side_packets":%s,"egress_to_low_side_bytes":%s,"icmp_errors_to_low_side":%s,"icmp_error_bytes":%s,"egress_frames_dropped":%s,"egress_frame_bytes":%s,"loss_drops":%s,"loss_drop_bytes":%s,"rmem_max":%s}\n' \
      "$lp" "$lb" "$ip_" "$ib" "$fp" "$fb" "$ep" "$eb" "$rmem_max"
  else
    echo "diode ${TX_NS} -> ${RX_NS}: up=${up} mtu=${mtu:-?} loss=${loss:-0}% rate=${rate:-unlimited}"
    echo "  packets toward the low side dropped (must be 0 for a well-behaved receiver): ${lp} (${lb} bytes)"
    echo "  kernel ICMP errors toward the low side dropped (port unreachable etc.): ${ip_}"
    echo "  frames dropped at the high-side veth egress: ${fp}"
    echo "  emulated loss drops: ${ep} (${eb} bytes)"
    echo "  net.core.rmem_max: ${rmem_max}"
  fi
}

main() {
  [ $# -ge 1 ] || usage
  SUB="$1"; shift
  case "$SUB" in
    up) cmd_up "$@" ;;
    down)
      while [ $# -gt 0 ]; do
        case "$1" in
          --prefix) PREFIX="${2:?--prefix needs P}"; shift 2 ;;
          *) die "down: unknown option '$1'" ;;
        esac
      done
      cmd_down ;;
    status) cmd_status "$@" ;;
    -h|--help|help) usage ;;
    *) die "unknown command '$SUB' (up|down|status)" ;;
  esac
}

main "$@"
