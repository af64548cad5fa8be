#!/usr/bin/env bash
# Storage-engine benchmarks for BENCHMARKS.md: append and read throughput, recovery time,
# and dd's sequential write speed to the same directory, interleaved round by round so the
# ratio is measured in the same run. Prints a Markdown report.
#
#   bash scripts/bench-storage.sh [DIR] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
dir="${1:-./freshet-data/bench}"
rounds="${2:-3}"
ensure_build_deps
cargo build --release --locked --bin freshet >&2
bin="$CARGO_TARGET_DIR/release/freshet"
mkdir -p "$dir"

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
json_field() { sed -E "s/.*\"$1\":([0-9.]+).*/\1/"; }

# dd: 1 GiB in 1 MiB blocks; MiB/s from its byte count and seconds.
dd_mibs() {
    local extra=$1 out
    out=$(dd if=/dev/zero of="$dir/dd.bin" bs=1M count=1024 $extra 2>&1 | tail -n1)
    rm -f "$dir/dd.bin"
    echo "$out" | awk '{printf "%.1f\n", $1 / 1048576 / $(NF-3)}'
}

append() { "$bin" perf log append --dir "$dir/log" --json "$@"; }

declare -a dd_cache dd_sync ours_cache ours_sync
# A discarded warm-up round: the first writes after a quiet period pay for page reclaim.
dd_mibs "" >/dev/null
append --total-mb 1024 --record-size 1024 --batch-records 500 >/dev/null
for ((r = 0; r < rounds; r++)); do
    dd_cache+=("$(dd_mibs "")")
    json=$(append --total-mb 1024 --record-size 1024 --batch-records 500)
    ours_cache+=("$(echo "$json" | json_field mib_per_sec)")
    ours_sync+=("$(echo "$json" | json_field mib_per_sec_with_fsync)")
    dd_sync+=("$(dd_mibs conv=fdatasync)")
done
m_dd=$(printf '%s\n' "${dd_cache[@]}" | median)
m_dds=$(printf '%s\n' "${dd_sync[@]}" | median)
m_us=$(printf '%s\n' "${ours_cache[@]}" | median)
m_uss=$(printf '%s\n' "${ours_sync[@]}" | median)

echo "### Append vs dd (1 GiB, 1 KiB records, batches of 500; median of $rounds interleaved rounds)"
echo
echo "| | MiB/s | ratio to dd |"
echo "|---|---:|---:|"
echo "| dd bs=1M (page cache) | $m_dd | 1.00 |"
echo "| freshet append (page cache) | $m_us | $(awk "BEGIN {printf \"%.2f\", $m_us / $m_dd}") |"
echo "| dd bs=1M conv=fdatasync | $m_dds | 1.00 |"
echo "| freshet append + fsync | $m_uss | $(awk "BEGIN {printf \"%.2f\", $m_uss / $m_dds}") |"
echo
echo "Rounds (dd, freshet, dd+sync, freshet+sync): ${dd_cache[*]} / ${ours_cache[*]} / ${dd_sync[*]} / ${ours_sync[*]}"
echo

echo "### Append and read throughput (256 MiB per run, median of $rounds)"
echo
echo "| records | batch | append records/s | append MiB/s | read records/s | read MiB/s |"
echo "|---:|---:|---:|---:|---:|---:|"
for shape in "100 1" "100 500" "1024 1" "1024 500"; do
    set -- $shape
    ar=(); am=(); rr=(); rm=()
    for ((r = 0; r < rounds; r++)); do
        a=$(append --total-mb 256 --record-size "$1" --batch-records "$2")
        ar+=("$(echo "$a" | json_field records_per_sec)"); am+=("$(echo "$a" | json_field mib_per_sec)")
        b=$("$bin" perf log read --dir "$dir/log" --json --total-mb 256 --record-size "$1" --batch-records "$2")
        rr+=("$(echo "$b" | json_field records_per_sec)"); rm+=("$(echo "$b" | json_field mib_per_sec)")
    done
    printf '| %s B | %s | %.0f | %.1f | %.0f | %.1f |\n' "$1" "$2" \
        "$(printf '%s\n' "${ar[@]}" | median)" "$(printf '%s\n' "${am[@]}" | median)" \
        "$(printf '%s\n' "${rr[@]}" | median)" "$(printf '%s\n' "${rm[@]}" | median)"
done
echo

if [ "$(id -u)" -eq 0 ]; then
    echo "### Sequential read from disk (1 GiB, page cache dropped first)"
    echo
    dd if=/dev/zero of="$dir/dd.bin" bs=1M count=1024 conv=fdatasync 2>/dev/null
    sync; echo 3 > /proc/sys/vm/drop_caches
    dd_read=$(dd if="$dir/dd.bin" of=/dev/null bs=1M 2>&1 | tail -n1 | awk '{printf "%.1f", $1 / 1048576 / $(NF-3)}')
    rm -f "$dir/dd.bin"
    cold=$("$bin" perf log read --dir "$dir/log" --json --total-mb 1024 --record-size 1024 --batch-records 500 --cold | json_field mib_per_sec)
    echo "| | MiB/s | ratio to dd |"
    echo "|---|---:|---:|"
    echo "| dd if=file bs=1M | $dd_read | 1.00 |"
    echo "| freshet read (1 MiB fetches) | $cold | $(awk "BEGIN {printf \"%.2f\", $cold / $dd_read}") |"
    echo
fi

echo "### Recovery of a 1 GiB partition (4 segments of 256 MiB)"
echo
echo "| page cache | unclean open (re-validate every batch) | clean open |"
echo "|---|---:|---:|"
for cold in "" --cold; do
    if [ -n "$cold" ] && [ "$(id -u)" -ne 0 ]; then
        echo "| cold | (needs root to drop the page cache) | |"
        continue
    fi
    rec=$("$bin" perf log recovery --dir "$dir/log" --json --total-mb 1024 --record-size 1024 --batch-records 500 --segment-mb 256 $cold)
    label=warm; [ -n "$cold" ] && label=cold
    printf '| %s | %.2f s (%.0f MiB/s) | %.3f s |\n' "$label" \
        "$(echo "$rec" | json_field unclean_open_seconds)" "$(echo "$rec" | json_field unclean_mib_per_sec)" \
        "$(echo "$rec" | json_field clean_open_seconds)"
done
rm -rf "$dir"
