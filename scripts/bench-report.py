#!/usr/bin/env python3
"""Markdown tables from the JSON lines of `cargo bench --bench throughput|latency|acks|...`.

Usage: scripts/bench-report.py [--update FILE.md] RESULTS.jsonl [...]
  Prints Markdown on stdout, or with --update replaces the text between
  "<!-- BEGIN GENERATED -->" and "<!-- END GENERATED -->" in FILE.md.

Takes the `"run": "median"` line of an arm where there is one, else its only run.
Every figure printed comes from the input; nothing is typed in by hand.
"""

import json
import sys


def load(paths):
    lines = []
    for p in paths:
        with open(p) as f:
            for raw in f:
                raw = raw.strip()
                if raw.startswith("{"):
                    lines.append(json.loads(raw))
    return lines


def pick(lines, bench, key):
    """One line per (impl, key): the median line if present, else the last run."""
    chosen = {}
    for v in lines:
        if v.get("bench") != bench:
            continue
        k = (v.get("impl"), v.get(key))
        if chosen.get(k, {}).get("run") == "median" and v.get("run") != "median":
            continue
        chosen[k] = v
    return chosen


def fmt(x, digits=0):
    if x is None:
        return "-"
    if isinstance(x, float) and x != x:
        return "n/a"
    if isinstance(x, (int, float)):
        return f"{x:,.{digits}f}"
    return str(x)


def ratio(a, b):
    if not a or not b:
        return "-"
    return f"{a / b:.2f}x"


def throughput(lines):
    chosen = pick(lines, "throughput", "sources")
    impls = ["tsercom", "tsercom-unix", "tonic-client-stream", "tonic-raw-batched",
             "tonic-raw-per-message", "python-tsercom-1.1.3"]
    out = []
    for sources in sorted({k[1] for k in chosen if isinstance(k[1], int)}):
        out.append(f"\n**{sources} source{'s' if sources > 1 else ''}**\n")
        out.append("| impl | samples/s | tsercom ÷ this | CPU s per million samples (= µs/sample) | CPU cores busy | samples per frame | samples | runs | complete | load (1 min) |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
        ts = chosen.get(("tsercom", sources), {}).get("samples_per_s")
        for impl in impls:
            v = chosen.get((impl, sources))
            if v is None:
                continue
            if "skipped" in v:
                out.append(f"| {impl} | skipped: {v['skipped']} | | | | | | | | |")
                continue
            sps = v.get("samples_per_s")
            cores = v.get("cpu_cores")
            if cores is None and "cpu_s_aggregator" in v and v.get("elapsed_s"):
                cores = (v["cpu_s_aggregator"] + v.get("cpu_s_source", 0)) / v["elapsed_s"]
            out.append(
                f"| {impl} | {fmt(sps)} | {ratio(ts, sps) if impl != 'tsercom' else '1.00x'} "
                f"| {fmt(v.get('cpu_s_per_million'), 2)} | {fmt(cores, 2)} "
                f"| {fmt(v.get('samples_per_frame') or v.get('batch'))} "
                f"| {fmt(v.get('samples') or v.get('received'))} | {v.get('runs', 1)} "
                f"| {v.get('complete', '-')} | {fmt(v.get('load_1m'), 2)} |"
            )
    return "\n".join(out)


def latency(lines):
    chosen = pick(lines, "latency", "rate_hz")
    impls = ["tsercom", "tsercom-tls", "tsercom-unix", "tsercom-rt1", "tsercom-unix-rt1", "tonic-raw", "tonic-raw-rt1", "lsl-sync", "lsl-async", "lsl", "zenoh", "python-tsercom-1.1.3"]
    rates = sorted({k[1] for k in chosen if k[1] is not None})
    out = []
    for rate in rates:
        out.append(f"\n**{rate:,} samples/s offered**\n")
        out.append("| impl | p50 µs | p90 µs | p99 µs | max µs | mean µs | p50 ÷ tonic-raw p50 | p50 ÷ LSL sync p50 | p99 ÷ tonic-raw p99 | achieved/s | CPU µs/sample | received | load (1 min) |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        raw = chosen.get(("tonic-raw", rate), {}).get("p99_us")
        raw50 = chosen.get(("tonic-raw", rate), {}).get("p50_us")
        lsl50 = chosen.get(("lsl-sync", rate), {}).get("p50_us")
        for impl in impls:
            v = chosen.get((impl, rate))
            if v is None:
                continue
            if "skipped" in v:
                out.append(f"| {impl} | skipped: {v['skipped']} | | | | | | | | | | | |")
                continue
            out.append(
                f"| {impl} | {fmt(v.get('p50_us'), 1)} | {fmt(v.get('p90_us'), 1)} | {fmt(v.get('p99_us'), 1)} "
                f"| {fmt(v.get('max_us'), 1)} | {fmt(v.get('mean_us'), 1)} | {ratio(v.get('p50_us'), raw50)} "
                f"| {ratio(v.get('p50_us'), lsl50)} | {ratio(v.get('p99_us'), raw)} "
                f"| {fmt(v.get('achieved_rate_hz'))} | {fmt(v.get('cpu_us_per_sample'), 1)} "
                f"| {fmt(v.get('received'))} | {fmt(v.get('load_1m'), 2)} |"
            )
    return "\n".join(out)


def hops(lines):
    """The hop breakdown of `cargo bench --bench latency --features hop-trace`."""
    rows = [v for v in lines if v.get("bench") == "latency_hops"]
    if not rows:
        return ""
    out = []
    keys = sorted({(v["impl"], v["rate_hz"]) for v in rows}, key=lambda k: (k[1], k[0]))
    for impl, rate in keys:
        segs = sorted((v for v in rows if v["impl"] == impl and v["rate_hz"] == rate), key=lambda v: v["order"])
        out.append(f"\n**{impl}, {rate:,} samples/s** ({segs[0].get('samples', '?')} samples traced)\n")
        out.append("| hop | p50 µs | p90 µs | p99 µs | mean µs |")
        out.append("|---|---:|---:|---:|---:|")
        for v in segs:
            out.append(f"| {v['hop']} | {fmt(v.get('p50_us'), 1)} | {fmt(v.get('p90_us'), 1)} | {fmt(v.get('p99_us'), 1)} | {fmt(v.get('mean_us'), 1)} |")
    return "\n".join(out)


def acks(lines):
    """Acks on (coalesced, and one per frame) against acks off, from one interleaved run."""
    chosen = pick(lines, "acks", "sources")
    ratios = {v.get("impl"): v for v in lines if v.get("bench") == "acks" and v.get("ratio")}
    off = chosen.get(("acks-off", 1), {})
    out = [
        "| arm | samples/s | ÷ acks off | CPU µs/sample | CPU cost vs acks off | lost | runs | complete | load (1 min) |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for impl in ("acks-coalesced", "acks-per-frame", "acks-off"):
        v = chosen.get((impl, 1))
        if v is None:
            continue
        r = ratios.get(impl, {})
        cost = r.get("cpu_cost_pct")
        out.append(
            f"| {impl} | {fmt(v.get('samples_per_s'))} "
            f"| {ratio(v.get('samples_per_s'), off.get('samples_per_s')) if impl != 'acks-off' else '1.00x'} "
            f"| {fmt(v.get('cpu_us_per_sample'), 3)} "
            f"| {'-' if cost is None else f'{cost:+.1f} %'} | {fmt(v.get('lost'))} "
            f"| {v.get('runs', 1)} | {v.get('complete', '-')} | {fmt(v.get('load_1m'), 2)} |"
        )
    return "\n".join(out)


def machine(lines):
    m = next((v for v in lines if v.get("machine")), None)
    after = next((v for v in lines if v.get("machine_after")), {})
    if m is None:
        return ""
    return (
        f"Run {m['date']} on {m['nproc']} cores ({m['cpu']}), Linux {m['kernel']}, "
        f"{m['rustc']}; load average (1/5/15 min) {m['loadavg']} before, "
        f"{after.get('loadavg', '?')} after{'; quick mode' if m.get('quick') else ''}.\n"
    )


def targets(lines):
    """The issue's targets, checked against the same figures as the tables."""
    tp = pick(lines, "throughput", "sources")
    lt = pick(lines, "latency", "rate_hz")
    rows = ["| target | figure | met |", "|---|---|---|"]

    def row(name, value, ok):
        rows.append(f"| {name} | {value} | {'yes' if ok else 'no'} |")

    for n in (1, 4):
        ts = tp.get(("tsercom", n), {})
        b = tp.get(("tonic-raw-batched", n), {})
        py = tp.get(("python-tsercom-1.1.3", n), {})
        sps = ts.get("samples_per_s")
        if sps:
            row(f"{n} source(s): >= 300k samples/s", f"{fmt(sps)}/s", sps >= 300_000)
        if sps and b.get("samples_per_s"):
            r = sps / b["samples_per_s"]
            row(f"{n} source(s): >= 0.7x batched tonic-raw (samples/s)", f"{r:.2f}x", r >= 0.7)
        if ts.get("cpu_s_per_million") and b.get("cpu_s_per_million"):
            r = b["cpu_s_per_million"] / ts["cpu_s_per_million"]
            row(
                f"{n} source(s): CPU per sample, batched tonic-raw ÷ tsercom (the ratio a CPU-bound 2-core run converges to)",
                f"{r:.2f}x",
                r >= 0.7,
            )
        if sps and py.get("samples_per_s"):
            r = sps / py["samples_per_s"]
            row(f"{n} source(s): >= 50x Python tsercom 1.1.3 (samples/s)", f"{r:.0f}x", r >= 50)
        if ts.get("cpu_s_per_million") and py.get("cpu_s_per_million"):
            r = py["cpu_s_per_million"] / ts["cpu_s_per_million"]
            row(f"{n} source(s): CPU per sample, Python ÷ tsercom", f"{r:.0f}x", r >= 50)
    for n in (1, 4):
        ts = tp.get(("tsercom", n), {})
        best = max((tp.get((a, n), {}) for a in ("tonic-client-stream", "tonic-raw-batched")),
                   key=lambda v: v.get("samples_per_s") or 0)
        if ts.get("samples_per_s") and best.get("samples_per_s"):
            r = ts["samples_per_s"] / best["samples_per_s"]
            row(f"{n} source(s): >= 1.0x the strongest hand-written tonic ({best['impl']}, samples/s)", f"{r:.2f}x", r >= 1.0)
        if ts.get("cpu_s_per_million") and best.get("cpu_s_per_million"):
            r = ts["cpu_s_per_million"] / best["cpu_s_per_million"]
            row(f"{n} source(s): CPU per sample <= 1.2x {best['impl']}", f"{r:.2f}x", r <= 1.2)
    lsl = lt.get(("lsl-sync", 1000), {})
    unix = lt.get(("tsercom-unix", 1000), {})
    if lsl.get("p50_us") and unix.get("p50_us"):
        r = unix["p50_us"] / lsl["p50_us"]
        row("same host (Unix socket) p50 <= 0.6x LSL sync p50 at 1 kHz", f"{r:.2f}x", r <= 0.6)
    if lsl.get("p99_us") and unix.get("p99_us"):
        row("same host (Unix socket) p99 <= LSL sync p99 at 1 kHz",
            f"{fmt(unix['p99_us'], 1)} vs {fmt(lsl['p99_us'], 1)} µs", unix["p99_us"] <= lsl["p99_us"])
    raw = lt.get(("tonic-raw", 1000), {})
    tcp = lt.get(("tsercom", 1000), {})
    if raw.get("p50_us") and tcp.get("p50_us"):
        r = tcp["p50_us"] / raw["p50_us"]
        row("TCP loopback p50 <= 1.1x tonic-raw p50 at 1 kHz", f"{r:.2f}x", r <= 1.1)
    v = lt.get(("tsercom", 1000), {})
    if v.get("p99_us") is not None:
        row("latency p99 <= 1 ms at 1 kHz", f"{fmt(v['p99_us'], 1)} µs", v["p99_us"] <= 1000)
    return "\n".join(rows)


def timesync(lines):
    out = [
        "| impl | link | injected offset | drift | phase | first estimate (p50 / max) | drift known to 10 ppm after (p50 / max) | abs error p50 | abs error p99 | reported bound p50 | readings outside the bound |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    phases = {
        "after_warmup": "first seconds after the 16 warm-up exchanges",
        "settled": "once the drift is known to 10 ppm",
    }
    for v in lines:
        if v.get("bench") == "timesync" and v.get("impl") == "tsercom":
            out.append(
                f"| tsercom | {v.get('link', 'loopback')} | {fmt(v['injected_offset_ms'])} ms | {fmt(v['drift_ppm'])} ppm "
                f"| {phases.get(v.get('phase'), v.get('phase', '-'))} "
                f"| {fmt(v['first_estimate_ms_p50'], 1)} / {fmt(v['first_estimate_ms_max'], 1)} ms "
                f"| {fmt(v.get('settle_s_p50'), 1)} / {fmt(v.get('settle_s_max'), 1)} s "
                f"| {fmt(v['abs_error_us_p50'], 1)} µs | {fmt(v['abs_error_us_p99'], 1)} µs "
                f"| {fmt(v['reported_uncertainty_us_p50'], 1)} µs "
                f"| {fmt(v.get('outside_bound'))} of {fmt(v['error_samples'])} |"
            )
    for v in lines:
        if v.get("scenario") == "timesync" and v.get("run") == "median":
            out.append(
                f"| python-tsercom-1.1.3 (median of {v['runs']}) | loopback | {fmt(v['injected_offset_us'] / 1e3)} ms | - | - "
                f"| {fmt(v['time_to_first_estimate_ms'], 1)} ms | - | {fmt(abs(v['error_us']), 1)} µs "
                f"| (estimates {v['estimate_ratio']:.4f} of the offset) | - | - |"
            )
        if v.get("bench") == "timesync" and v.get("skipped"):
            out.append(f"| {v['impl']} | skipped: {v['skipped']} | | | | | | | | | |")
    return "\n".join(out)


def discovery(lines):
    out = ["| metric | runs | p50 | max |", "|---|---:|---:|---:|"]
    for v in lines:
        if v.get("bench") == "discovery":
            out.append(f"| {v['metric']} | {v['runs']} | {fmt(v['p50_ms'], 1)} ms | {fmt(v['max_ms'], 1)} ms |")
    return "\n".join(out)


def reconnect(lines):
    out = ["| link cut at | cuts (s) | n | p50 | p90 | max |", "|---|---|---:|---:|---:|---:|"]
    notes = []
    for v in lines:
        if v.get("bench") != "reconnect":
            continue
        if v.get("skipped"):
            notes.append(f"skipped: {v['skipped']}")
        elif v.get("metric") == "restore_to_first_new_sample":
            cuts = ", ".join(str(c) for c in v["cut_s"])
            where = {"source": "source's end", "aggregator": "aggregator's end"}.get(v["cut_at"], v["cut_at"])
            out.append(
                f"| {where} | {cuts} | {v['n']} | {fmt(v['p50_ms'], 1)} ms | {fmt(v['p90_ms'], 1)} ms | {fmt(v['max_ms'], 1)} ms |"
            )
        elif v.get("metric") == "integrity":
            notes.append(
                f"{v['samples']:,} samples at 1 kHz across the cuts: received {v['received']:,} "
                f"({v['ranges']}), in order: {'yes' if v['ordered'] else 'no'}, gaps: {v['gaps']}, "
                f"resent duplicates dropped: {v['resent_duplicates_dropped']:,}; "
                f"nothing lost or duplicated: {'yes' if v['intact'] else 'NO'}"
            )
    return "\n".join(out + [""] + notes)


def tls(lines):
    out = [
        "| mode | samples/s | CPU µs/sample | connect p50 | connect p90 | CPU µs/connect |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    median = any(v.get("run") == "median" for v in lines if str(v.get("bench", "")).startswith("tls_"))
    rows = {}
    for v in lines:
        if not str(v.get("bench", "")).startswith("tls_"):
            continue
        if median and v.get("run") != "median":
            continue
        rows.setdefault(v["mode"], {}).update(v)
    for mode in ("plain", "tls", "mtls"):
        v = rows.get(mode)
        if v is None:
            continue
        out.append(
            f"| {mode} | {fmt(v.get('samples_per_s'))} | {fmt(v.get('cpu_us_per_sample'), 2)} "
            f"| {fmt(v.get('connect_p50_us'))} µs | {fmt(v.get('connect_p90_us'))} µs "
            f"| {fmt(v.get('cpu_us_per_connect'))} |"
        )
    return "\n".join(out)


def render(lines):
    benches = {v.get("bench") for v in lines}
    parts = [machine(lines)]
    if "throughput" in benches:
        parts.append("### throughput\n" + throughput(lines) + "\n")
    if "latency" in benches:
        parts.append("### latency\n" + latency(lines) + "\n")
        if hops(lines):
            parts.append("### latency, hop by hop (feature hop-trace)\n" + hops(lines) + "\n")
    if "acks" in benches:
        parts.append(
            "### acknowledgements (issue 9: cost of acks <= 5 % against acks off; 1 source)\n\n"
            + acks(lines)
            + "\n"
        )
    if "timesync" in benches:
        parts.append("### timesync (loopback and a 2 ms +/- 0.5 ms relay; +250 ms and -3 s / 100 ppm injected)\n\n" + timesync(lines) + "\n")
    if "discovery" in benches:
        parts.append("### discovery (mDNS on loopback)\n\n" + discovery(lines) + "\n")
    if "reconnect" in benches:
        parts.append(
            "### reconnect (veth between two network namespaces, 1 kHz stream, default settings)\n\n"
            "Time from `ip link set up` to the aggregator's first sample beyond what it had "
            "before the cut.\n\n" + reconnect(lines) + "\n"
        )
    if any(str(b).startswith("tls_") for b in benches):
        parts.append(
            "### TLS (1 source to an aggregator on loopback; connect = TCP, TLS, HTTP/2 and one gRPC check)\n\n"
            + tls(lines)
            + "\n"
        )
    parts.append("### targets (issue 7)\n\n" + targets(lines) + "\n")
    return "\n".join(parts)


def main():
    args = sys.argv[1:]
    target = None
    if args[:1] == ["--update"]:
        target, args = args[1], args[2:]
    text = render(load(args))
    if target is None:
        print(text)
        return
    begin, end = "<!-- BEGIN GENERATED -->", "<!-- END GENERATED -->"
    with open(target) as f:
        doc = f.read()
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(target, "w") as f:
        f.write(head + begin + "\n" + text + "\n" + end + tail)


if __name__ == "__main__":
    main()
