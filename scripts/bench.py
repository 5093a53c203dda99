#!/usr/bin/env python3
"""`make bench`: Hunter's figures, measured on this machine.

Runs the criterion benches (rules, hot path, ingest handler), then `hunter-local --once
--no-dynamics` (release build) end to end: 10k and 100k referrals in memory, 10k on the durable
embedded backend (a fresh data directory), DynamoDB/SQS as moto server (--aws, run under
scripts/with-moto.sh; 1k by default, see BENCH_MOTO_N), the Dataverse push benchmark, and the
median time from a referral created in Partner Center to its lead in Dataverse, by webhook and by
the 60 s sweep alone (infra/local/tests/webhooks.rs, ignored test `latency_…`, about 3 minutes).
Each end-to-end run reports referrals/s, wall time, peak RSS and the time by stage from the run's summary. Writes
target/bench/bench.json and prints a Markdown table for the README.

Environment: BENCH_SIZES (e.g. "10000,100000"), BENCH_MOTO_N (referrals on moto, 1000:
moto's answers slow down as its table grows — here 200 referrals took 25 s and 1,000 took 418 s —
so the figure measures moto more than Hunter), BENCH_SKIP (comma list of: criterion, memory,
durable, moto, push, latency) to leave parts out. Results are written after every part.
"""
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "target" / "bench"
BIN = ROOT / "target" / "release" / "hunter-local"
SKIP = set(filter(None, os.environ.get("BENCH_SKIP", "").split(",")))


def run(cmd, env=None, **kw):
    print("$", " ".join(str(c) for c in cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, check=True, **kw)


def machine():
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    except (OSError, AttributeError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memoryGb": round(mem_kb / 1024 / 1024, 1),
        "os": f"{platform.system()} {platform.release()}",
        "rustc": subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip(),
    }


def criterion():
    run(["cargo", "bench", "-p", "hunter-domain", "--bench", "hot_path"])
    run(["cargo", "bench", "-p", "hunter-local", "--bench", "pipeline"])
    results = {}
    base = ROOT / "target" / "criterion"
    for estimates in sorted(base.glob("*/*/new/estimates.json")):
        group, name = estimates.parts[-4], estimates.parts[-3]
        bench = json.loads((estimates.parent / "benchmark.json").read_text())
        per_iter_ns = json.loads(estimates.read_text())["mean"]["point_estimate"]
        elements = (bench.get("throughput") or {}).get("Elements") or 1
        results[f"{group}/{name}"] = {"usPerReferral": round(per_iter_ns / elements / 1000, 3)}
    return results


def once(label, n, backend_args, env=None, wrapper=()):
    """One `--once --no-dynamics` run; wall time and peak RSS from GNU time."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as timing:
        cmd = [*wrapper, "/usr/bin/time", "-f", "%e %M", "-o", timing.name, str(BIN),
               "--once", "--no-dynamics", "--seed", str(n), *backend_args]
        proc = run(cmd, env={"RUST_LOG": "error", **(env or {})}, capture_output=True, text=True)
        wall_s, rss_kb = timing.read().split()[-2:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["fetched"] == n and summary["stored"] == n, summary
    wall = float(wall_s)
    return {
        "run": label,
        "referrals": n,
        "wallS": wall,
        "referralsPerS": round(n / wall),
        "syncMs": summary["durationMs"],
        "peakRssMb": round(int(rss_kb) / 1024),
        "stages": summary["stages"],
    }


def end_to_end(save):
    run(["cargo", "build", "--release", "-q", "-p", "hunter-local", "--bin", "hunter-local"])
    sizes = [int(s) for s in os.environ.get("BENCH_SIZES", "10000,100000").split(",")]
    runs = []
    if "memory" not in SKIP:
        for n in sizes:
            runs.append(once(f"in memory, {n:,}", n, ["--in-memory"]))
            save(runs)
    if "durable" not in SKIP:
        with tempfile.TemporaryDirectory() as data:
            runs.append(once("durable (SQLite), 10,000", 10_000, ["--data-dir", data]))
            save(runs)
    if "moto" not in SKIP:
        suffix = uuid.uuid4().hex
        env = {
            "HUNTER_TABLE": f"hunter-bench-{suffix}",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
        # with-moto.sh exports HUNTER_MOTO_URL; the endpoint and queue URLs follow from it.
        script = (
            'export AWS_ENDPOINT_URL="$HUNTER_MOTO_URL"; '
            f'export HUNTER_REFERRALS_QUEUE_URL="$HUNTER_MOTO_URL/123456789012/referrals-{suffix}"; '
            f'export HUNTER_DYNAMICS_QUEUE_URL="$HUNTER_MOTO_URL/123456789012/push-{suffix}"; '
            'exec "$@"'
        )
        n = int(os.environ.get("BENCH_MOTO_N", "1000"))
        runs.append(once(f"DynamoDB + SQS on moto, {n:,}", n, ["--aws"], env=env,
                         wrapper=("scripts/with-moto.sh", "bash", "-c", script, "bash")))
    return runs


def push():
    out = OUT / "push.json"
    run(["cargo", "bench", "-p", "hunter-local", "--bench", "dataverse_push"], env={"BENCH_OUT": str(out)})
    return json.loads(out.read_text()) if out.exists() else None


def latency():
    out = OUT / "latency.json"
    run(["cargo", "test", "-p", "hunter-local", "--test", "webhooks", "--", "--ignored",
         "--nocapture", "latency_from_partner_center_to_dataverse"], env={"BENCH_OUT": str(out)})
    return json.loads(out.read_text()) if out.exists() else None


def table(results):
    lines = ["| run | referrals/s | wall | peak RSS | fetch | ingest after the fetch | of which DNS scans | inside queues |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results.get("endToEnd", []):
        s = r["stages"]
        lines.append(
            f"| {r['run']} | {r['referralsPerS']:,} | {r['wallS']:.2f} s | {r['peakRssMb']} MB | "
            f"{s['fetchMs'] / 1000:.2f} s | {s['ingestMs'] / 1000:.2f} s | {s['scanMs'] / 1000:.2f} s | "
            f"{s['queueMs'] / 1000:.2f} s |")
    for name, c in results.get("criterion", {}).items():
        lines.append(f"| criterion `{name}` | {1e6 / c['usPerReferral']:,.0f} | "
                     f"{c['usPerReferral']} µs per referral | | | | | |")
    return "\n".join(lines)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    results = {"machine": machine()}

    def save(runs=None):
        if runs is not None:
            results["endToEnd"] = runs
        (OUT / "bench.json").write_text(json.dumps(results, indent=2) + "\n")

    if "criterion" not in SKIP:
        results["criterion"] = criterion()
        save()
    save(end_to_end(save))
    if "push" not in SKIP:
        results["push"] = push()
        save()
    if "latency" not in SKIP:
        results["latency"] = latency()
        save()
    m = results["machine"]
    print(f"\nMachine: {m['cpu']}, {m['cores']} cores, {m['memoryGb']} GB, {m['os']}, {m['rustc']}\n")
    print(table(results))
    if results.get("latency"):
        lat = results["latency"]
        print(f"\nReferral created in Partner Center → its lead in Dataverse (median): "
              f"{lat['webhooks']['medianS']:.1f} s by webhook, "
              f"{lat['sweepEvery60s']['medianS']:.1f} s by the 60 s sweep alone")
    print(f"\nwritten: {OUT / 'bench.json'}")


if __name__ == "__main__":
    main()
