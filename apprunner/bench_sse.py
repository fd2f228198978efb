"""Capacity benchmark (not a test): how many concurrent SSE streams one service process holds with heartbeats on time.

Starts throwaway PostgreSQL + moto + the service (one uvicorn process, as in the image) on 127.0.0.1.

Scenario `idle` (default) ramps the number of open `GET /projects/{id}/events` streams. At each step it holds
them for a while with a 1 s heartbeat and measures heartbeat lateness (gap between pings minus the
interval), the latency of ordinary requests made meanwhile, and the server's CPU and memory. It stops at
the first step whose p99 lateness reaches the threshold (or that fails to open every stream), and reports
the largest good step.

Scenario `flowing`: N streams on ONE project while a separate process posts events to it (one every
--event-interval seconds, so pings and events interleave). Per step it reports the heartbeat gap (for each
ping: time since the stream's previous message; ideally exactly the interval), event delivery latency
(POST sent -> event read by a stream), `POST /events` latency, lost/duplicated/reordered events, server CPU.
With `--baseline REF` the same steps also run against the service of git ref REF (e.g. the commit before
the per-project fan-out), started from `git archive` in a temp folder, alternating step by step.

    .venv/bin/python apprunner/bench_sse.py                      # idle ramp, ~2-3 minutes
    .venv/bin/python apprunner/bench_sse.py --steps 100 500 --hold 5
    .venv/bin/python apprunner/bench_sse.py --scenario flowing --steps 1000 2000 --baseline 0e05c8e

Traffic goes only to 127.0.0.1; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))
import localdev

HERE = Path(__file__).resolve().parent
HEARTBEAT = 1.0


@dataclass
class Stream:
    """One SSE connection of a step: when its response opened (time.monotonic(); 0 = never) and why it failed."""

    opened_at: float = 0.0
    error: str = ""


S = TypeVar("S", bound=Stream)


@dataclass
class IdleStream(Stream):
    pings: list[float] = field(default_factory=list)  # loop.time() of each ping


async def request_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str,
                         status_timeout: float) -> None:
    """Send `GET path` for an SSE stream on an open connection and read up to the end of the response headers.

    Raises RuntimeError when the status is not 200, TimeoutError when no status line comes in `status_timeout` s.
    """
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), status_timeout)
    if b" 200 " not in status:
        raise RuntimeError(status.decode(errors="replace").strip())
    while (await reader.readline()) not in (b"\r\n", b""):
        pass  # headers


async def run_stream(port: int, path: str, status_timeout: float, stream: Stream, opened: asyncio.Queue,
                     read: Callable[[asyncio.StreamReader], Awaitable[None]]) -> None:
    """Open `GET path` on 127.0.0.1:`port`, then `read` the response body until it returns or the task is cancelled.

    Puts 1 on `opened` once the response headers are in, 0 if the stream fails before that; any failure is kept
    in `stream.error` (never raised). The connection is closed in every case.
    """
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 30)
        await request_stream(reader, writer, path, status_timeout)
        stream.opened_at = time.monotonic()
        opened.put_nowait(1)
        await read(reader)
    except asyncio.CancelledError:
        pass  # the step is over
    except Exception as e:
        stream.error = f"{type(e).__name__}: {e}"
        if not stream.opened_at:
            opened.put_nowait(0)
    finally:
        if writer is not None:
            writer.close()


async def hold_stream(port: int, path: str, stream: IdleStream, stop: asyncio.Event, opened: asyncio.Queue) -> None:
    """Hold one SSE response until `stop` is set and record when each ping arrives."""
    async def read_pings(reader: asyncio.StreamReader) -> None:
        loop = asyncio.get_running_loop()
        stop_wait = asyncio.ensure_future(stop.wait())
        while not stop.is_set():
            read = asyncio.ensure_future(reader.readline())
            done, _ = await asyncio.wait({read, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if read not in done:
                read.cancel()
                break
            line = read.result()
            if not line:
                raise RuntimeError("server closed the stream early")
            if b": ping" in line:  # chunked framing: the ping comment sits on its own line
                stream.pings.append(loop.time())
        stop_wait.cancel()

    await run_stream(port, path, 60, stream, opened, read_pings)


def proc_stats(pid: int) -> tuple[float, int]:
    """(cpu seconds used so far, resident bytes) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    return cpu, rss


def ms(seconds: float) -> float | None:
    return None if seconds != seconds else round(seconds * 1000, 1)  # NaN (no samples) -> None


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def request_latencies(base: str, path: str, count: int, spacing: float) -> list[float]:
    out = []
    for _ in range(count):
        t0 = time.perf_counter()
        await asyncio.to_thread(lambda: urllib.request.urlopen(base + path, timeout=10).read())
        out.append(time.perf_counter() - t0)
        await asyncio.sleep(spacing)
    return out


async def open_streams(streams: list[S], start: Callable[[S, asyncio.Queue], Awaitable[None]],
                       wait_s: float) -> tuple[list[asyncio.Task], int, float]:
    """Run `start(stream, opened)` as a task for each stream, ramped up, and wait until each has said on `opened`
    whether it opened (at most `wait_s` seconds for each answer).

    Returns the tasks, how many streams opened, and the seconds from the first start to the last answer.
    """
    opened: asyncio.Queue = asyncio.Queue()
    t0 = time.monotonic()
    tasks = []
    for i, s in enumerate(streams):
        tasks.append(asyncio.create_task(start(s, opened)))
        if i % 50 == 49:
            await asyncio.sleep(0.02)  # a ramp, not a SYN flood
    ok = 0
    try:
        for _ in streams:
            ok += await asyncio.wait_for(opened.get(), wait_s)
    except TimeoutError:
        pass
    return tasks, ok, time.monotonic() - t0


async def run_step(n: int, port: int, base: str, project_id: str, pid: int, hold: float) -> dict:
    stop = asyncio.Event()
    streams = [IdleStream() for _ in range(n)]
    path = f"/projects/{project_id}/events"
    tasks, ok, open_seconds = await open_streams(
        streams, lambda s, opened: hold_stream(port, path, s, stop, opened), 90)
    loop = asyncio.get_running_loop()
    await asyncio.sleep(HEARTBEAT * 1.5)  # settle
    cpu0, _ = proc_stats(pid)
    window_start = loop.time()
    latencies = await request_latencies(base, f"/projects/{project_id}", max(5, int(hold * 4)), 0.25)
    remaining = hold - (loop.time() - window_start)
    if remaining > 0:
        await asyncio.sleep(remaining)
    window_end = loop.time()
    cpu1, rss = proc_stats(pid)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    lateness = []
    for s in streams:
        pings = [t for t in s.pings if window_start - HEARTBEAT * 2 <= t <= window_end]
        lateness += [max(0.0, (b - a) - HEARTBEAT) for a, b in itertools.pairwise(pings)]
    errors = [s.error for s in streams if s.error]
    await asyncio.sleep(2)  # let the server close the streams before the next step
    return {
        "streams": n, "opened": ok, "errors": len(errors), "first_error": errors[0] if errors else "",
        "open_s": round(open_seconds, 2), "gaps": len(lateness),
        "late_p50_ms": round(percentile(lateness, 50) * 1000, 1),
        "late_p99_ms": round(percentile(lateness, 99) * 1000, 1),
        "late_max_ms": round(max(lateness, default=float("nan")) * 1000, 1),
        "req_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "req_p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "server_cpu_pct": round((cpu1 - cpu0) / (window_end - window_start) * 100, 1),
        "server_rss_mb": round(rss / 2**20, 1),
    }


async def ramp(steps: list[int], hold: float, threshold_ms: float, budget_s: float, base: str, port: int,
               project_id: str, pid: int) -> list[dict]:
    rows = []
    started = time.monotonic()
    for n in steps:
        if time.monotonic() - started > budget_s:
            print(f"time budget of {budget_s:.0f}s used; stopping before {n}", file=sys.stderr)
            break
        row = await run_step(n, port, base, project_id, pid, hold)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
        if row["opened"] < n or row["late_p99_ms"] >= threshold_ms or row["errors"]:
            break
    return rows


@dataclass
class FlowStream(Stream):
    messages: list[tuple[float, int]] = field(default_factory=list)  # (time.monotonic(), event id or 0 = ping)


async def follow_stream(port: int, path: str, stream: FlowStream, opened: asyncio.Queue) -> None:
    """Hold one SSE response (until cancelled) and record when each event id and each ping arrives.

    Reads whatever bytes are there and splits lines itself: one read per wake-up, not one task per line,
    so the load generator stays cheaper than the server it measures.
    """
    now = time.monotonic

    async def read_messages(reader: asyncio.StreamReader) -> None:
        partial = b""
        while True:
            data = await reader.read(65536)
            if not data:
                raise RuntimeError("server closed the stream early")
            at = now()
            lines = (partial + data).split(b"\n")
            partial = lines.pop()
            for line in lines:
                if line.startswith(b"id: "):
                    stream.messages.append((at, int(line[4:])))
                elif line.startswith(b": ping"):
                    stream.messages.append((at, 0))

    await run_stream(port, path, 90, stream, opened, read_messages)


def post_events_main(base: str, project_id: str, interval: float, seconds: float) -> int:
    """Child process: POST one event every `interval` s for `seconds`; print [[id, sent_monotonic, latency_s]]."""
    out = []
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
        body = json.dumps({"type": "bench.step", "data": {"n": n, "pad": "x" * 200}}).encode()
        req = urllib.request.Request(f"{base}/projects/{project_id}/events", data=body,
                                     headers={"Content-Type": "application/json"})
        sent = time.monotonic()
        event_id = json.loads(urllib.request.urlopen(req, timeout=30).read())["id"]
        latency = time.monotonic() - sent
        out.append([event_id, sent, latency])
        time.sleep(max(0.0, interval - latency))
    print(json.dumps(out))
    return 0


def create_project(base: str, name: str) -> str:
    req = urllib.request.Request(base + "/projects", data=json.dumps({"name": name}).encode(),
                                 headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=30).read())["id"]


async def run_flowing_step(n: int, label: str, base: str, pid: int, hold: float, interval: float) -> dict:
    port = int(base.rsplit(":", 1)[1])
    project_id = await asyncio.to_thread(create_project, base, f"bench {label} {n}")
    streams = [FlowStream() for _ in range(n)]
    path = f"/projects/{project_id}/events"
    tasks, ok, open_seconds = await open_streams(streams, lambda s, opened: follow_stream(port, path, s, opened), 120)
    await asyncio.sleep(HEARTBEAT * 1.5)  # settle
    cpu0, _ = proc_stats(pid)
    client0 = resource.getrusage(resource.RUSAGE_SELF)
    window_start = time.monotonic()
    poster = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--post-events", base, project_id, str(interval), str(hold),
        stdout=asyncio.subprocess.PIPE)
    stdout, _ = await poster.communicate()
    posted = json.loads(stdout)
    await asyncio.sleep(HEARTBEAT * 2)  # the last events reach every stream
    window_end = time.monotonic()
    cpu1, rss = proc_stats(pid)
    client1 = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = (client1.ru_utime + client1.ru_stime) - (client0.ru_utime + client0.ru_stime)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    sent_at = {event_id: sent for event_id, sent, _ in posted}
    posted_ids = [event_id for event_id, _, _ in posted]
    gaps, delivery, incomplete, wrong = [], [], 0, 0
    for s in streams:
        ids = [i for _, i in s.messages if i]
        if ids != sorted(set(ids)) or not set(ids) <= set(posted_ids):
            wrong += 1  # duplicated, reordered or unknown ids
        elif s.opened_at and ids != posted_ids:
            incomplete += 1  # not every posted event had arrived when the step ended (late, or lost)
        previous = None
        for at, event_id in s.messages:
            if event_id in sent_at:
                delivery.append(at - sent_at[event_id])
            elif previous is not None and at >= window_start:
                gaps.append(at - previous)
            previous = at
    errors = [s.error for s in streams if s.error]
    post_latencies = [latency for _, _, latency in posted]
    await asyncio.sleep(2)  # let the server close the streams before the next step
    return {
        "service": label, "streams": n, "opened": ok, "errors": len(errors),
        "first_error": errors[0] if errors else "", "open_s": round(open_seconds, 1),
        "events": len(posted), "incomplete": incomplete, "dup_or_reordered": wrong, "pings": len(gaps),
        "gap_p50_ms": ms(percentile(gaps, 50)), "gap_p99_ms": ms(percentile(gaps, 99)),
        "gap_max_ms": ms(max(gaps, default=float("nan"))),
        "deliver_p50_ms": ms(percentile(delivery, 50)), "deliver_p99_ms": ms(percentile(delivery, 99)),
        "post_p50_ms": ms(percentile(post_latencies, 50)), "post_p99_ms": ms(percentile(post_latencies, 99)),
        "server_cpu_pct": round((cpu1 - cpu0) / (window_end - window_start) * 100),
        "server_rss_mb": round(rss / 2**20),
        "client_cpu_pct": round(client_cpu / (window_end - window_start) * 100),
        "loadavg_1m": round(os.getloadavg()[0], 1),
    }


async def flowing(steps: list[int], services: list[tuple[str, str, int]], hold: float, interval: float) -> list[dict]:
    rows = []
    for n in steps:
        for label, base, pid in services:
            row = await run_flowing_step(n, label, base, pid, hold, interval)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def _fast_loop_factory():
    """uvloop for the load generator when installed (it is a service dependency), else asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def baseline_service_dir(ref: str, into: Path) -> Path:
    """The `apprunner/service` folder of git ref `ref`, unpacked under `into` (nothing else is touched)."""
    done = subprocess.run(["git", "-C", str(HERE.parent), "archive", ref, "apprunner/service"],
                          capture_output=True)
    if done.returncode != 0:
        raise SystemExit(f"--baseline {ref}: git archive failed: {done.stderr.decode(errors='replace').strip()}")
    archive = done.stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "apprunner" / "service"


def run_flowing(args: argparse.Namespace) -> int:
    with localdev.LocalPostgres(max_connections=200) as pg, localdev.LocalAws() as aws, \
            tempfile.TemporaryDirectory(prefix="bench-sse-") as scratch:
        aws.create_db_secret(pg.password)
        env = {**localdev.aws_env(aws), **localdev.contract_values(pg, aws, SSE_MAX_STREAM_SECONDS="110"),
               "SSE_HEARTBEAT_SECONDS": str(HEARTBEAT), "BIND_ADDRESS": "127.0.0.1"}
        variants = [("new", localdev.SERVICE_DIR)]
        if args.baseline:
            variants.insert(0, (f"baseline {args.baseline}", baseline_service_dir(args.baseline, Path(scratch))))
        procs, services = [], []
        try:
            for label, service_dir in variants:
                log_path = Path(scratch) / f"service-{len(procs)}.log"
                proc, base = localdev.start_service(env, log_path, service_dir=service_dir)
                procs.append(proc)
                services.append((label, base, proc.pid))
            with asyncio.Runner(loop_factory=_fast_loop_factory()) as runner:
                rows = runner.run(flowing(args.steps, services, args.hold, args.event_interval))
        finally:
            for proc in procs:
                localdev.stop_service(proc)
    cols = ["service", "streams", "opened", "errors", "events", "incomplete", "dup_or_reordered", "gap_p50_ms",
            "gap_p99_ms", "gap_max_ms", "deliver_p50_ms", "deliver_p99_ms", "post_p50_ms", "post_p99_ms",
            "server_cpu_pct", "server_rss_mb", "client_cpu_pct", "loadavg_1m"]
    print(" | ".join(cols))
    for row in rows:
        print(" | ".join(str(row[c]) for c in cols))
    load = os.getloadavg()
    print(f"cpus={os.cpu_count()} heartbeat={HEARTBEAT}s event_interval={args.event_interval}s hold={args.hold}s "
          f"loadavg(1/5/15 min)={load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--post-events"]:  # the event poster child process of the flowing scenario
        base, project_id, interval, seconds = argv[1:5]
        return post_events_main(base, project_id, float(interval), float(seconds))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=["idle", "flowing"], default="idle")
    parser.add_argument("--steps", type=int, nargs="+", default=None,
                        help="stream counts (idle default: 100 .. 4000; flowing default: 500 1000 2000)")
    parser.add_argument("--event-interval", type=float, default=1.5 * HEARTBEAT,
                        help="flowing: seconds between posted events (default 1.5 x heartbeat)")
    parser.add_argument("--baseline", help="flowing: also run the service of this git ref, side by side")
    parser.add_argument("--hold", type=float, default=10.0, help="seconds to hold each step's streams")
    parser.add_argument("--threshold-ms", type=float, default=1000.0, help="p99 heartbeat lateness limit")
    parser.add_argument("--budget", type=float, default=300.0, help="stop starting new steps after this")
    args = parser.parse_args(argv)
    if args.steps is None:
        args.steps = [100, 250, 500, 1000, 2000, 3000, 4000] if args.scenario == "idle" else [500, 1000, 2000]
    if max(args.steps) > 10_000:
        parser.error("steps above 10000 are not supported")
    if not 0.05 <= args.event_interval <= 60:
        parser.error("--event-interval must be between 0.05 and 60 seconds")

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 2 * max(args.steps) + 1024))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # inherited by the service process
    if args.scenario == "flowing":
        return run_flowing(args)
    with localdev.LocalPostgres() as pg, localdev.LocalAws() as aws:
        aws.create_db_secret(pg.password)
        env = {**localdev.aws_env(aws), **localdev.contract_values(pg, aws, SSE_MAX_STREAM_SECONDS="110"),
               "SSE_HEARTBEAT_SECONDS": str(HEARTBEAT), "BIND_ADDRESS": "127.0.0.1"}
        log_path = Path(tempfile.gettempdir()) / "bench_sse_service.log"
        proc, base = localdev.start_service(env, log_path)
        try:
            req = urllib.request.Request(base + "/projects", data=b'{"name": "bench"}',
                                         headers={"Content-Type": "application/json"})
            project_id = json.loads(urllib.request.urlopen(req, timeout=10).read())["id"]
            port = int(base.rsplit(":", 1)[1])
            rows = asyncio.run(ramp(args.steps, args.hold, args.threshold_ms, args.budget, base, port,
                                    project_id, proc.pid))
        finally:
            localdev.stop_service(proc)
    cols = ["streams", "opened", "errors", "open_s", "late_p50_ms", "late_p99_ms", "late_max_ms", "req_p50_ms",
            "req_p99_ms", "server_cpu_pct", "server_rss_mb"]
    print(" | ".join(cols))
    for row in rows:
        print(" | ".join(str(row[c]) for c in cols))
    good = [r["streams"] for r in rows
            if r["opened"] == r["streams"] and not r["errors"] and r["late_p99_ms"] < args.threshold_ms]
    print(f"cpus={os.cpu_count()} heartbeat={HEARTBEAT}s hold={args.hold}s")
    print(f"largest step with every stream open and p99 heartbeat lateness < {args.threshold_ms:.0f} ms: "
          f"{max(good) if good else 0}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
