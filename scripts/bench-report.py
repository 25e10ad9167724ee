#!/usr/bin/env python3
"""Markdown tables from the JSON lines of `cargo bench --bench throughput|latency`.

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
    impls = ["tsercom", "tonic-raw-batched", "tonic-raw-per-message", "python-tsercom-1.1.3"]
    out = []
    for sources in (1, 4):
        out.append(f"\n**{sources} source{'s' if sources > 1 else ''}**\n")
        out.append("| impl | samples/s | tsercom ÷ this | CPU s per million samples (= µs/sample) | CPU cores busy | samples | runs | complete | load (1 min) |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---|---:|")
        ts = chosen.get(("tsercom", sources), {}).get("samples_per_s")
        for impl in impls:
            v = chosen.get((impl, sources))
            if v is None:
                continue
            if "skipped" in v:
                out.append(f"| {impl} | skipped: {v['skipped']} | | | | | | | |")
                continue
            sps = v.get("samples_per_s")
            cores = v.get("cpu_cores")
            if cores is None and "cpu_s_aggregator" in v and v.get("elapsed_s"):
                cores = (v["cpu_s_aggregator"] + v.get("cpu_s_source", 0)) / v["elapsed_s"]
            out.append(
                f"| {impl} | {fmt(sps)} | {ratio(ts, sps) if impl != 'tsercom' else '1.00x'} "
                f"| {fmt(v.get('cpu_s_per_million'), 2)} | {fmt(cores, 2)} "
                f"| {fmt(v.get('samples') or v.get('received'))} | {v.get('runs', 1)} "
                f"| {v.get('complete', '-')} | {fmt(v.get('load_1m'), 2)} |"
            )
    return "\n".join(out)


def latency(lines):
    chosen = pick(lines, "latency", "rate_hz")
    impls = ["tsercom", "tonic-raw", "python-tsercom-1.1.3"]
    rates = sorted({k[1] for k in chosen if k[1] is not None})
    out = []
    for rate in rates:
        out.append(f"\n**{rate:,} samples/s offered**\n")
        out.append("| impl | p50 µs | p90 µs | p99 µs | max µs | mean µs | p99 ÷ tonic-raw p99 | achieved/s | CPU µs/sample | received | load (1 min) |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        raw = chosen.get(("tonic-raw", rate), {}).get("p99_us")
        for impl in impls:
            v = chosen.get((impl, rate))
            if v is None:
                continue
            if "skipped" in v:
                out.append(f"| {impl} | skipped: {v['skipped']} | | | | | | | | | |")
                continue
            out.append(
                f"| {impl} | {fmt(v.get('p50_us'), 1)} | {fmt(v.get('p90_us'), 1)} | {fmt(v.get('p99_us'), 1)} "
                f"| {fmt(v.get('max_us'), 1)} | {fmt(v.get('mean_us'), 1)} | {ratio(v.get('p99_us'), raw)} "
                f"| {fmt(v.get('achieved_rate_hz'))} | {fmt(v.get('cpu_us_per_sample'), 1)} "
                f"| {fmt(v.get('received'))} | {fmt(v.get('load_1m'), 2)} |"
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


def render(lines):
    benches = {v.get("bench") for v in lines}
    parts = [machine(lines)]
    if "throughput" in benches:
        parts.append("### throughput\n" + throughput(lines) + "\n")
    if "latency" in benches:
        parts.append("### latency\n" + latency(lines) + "\n")
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
