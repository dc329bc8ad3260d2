"""Load generators: wrk (Debian's package) when installed, else a small Python one.

Each request is an M-PESA C2B confirmation with a receipt code no other request used.
"""

from __future__ import annotations

import http.client
import json
import re
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import psycopg

from bench.common import ROOT, have_wrk

SAMPLE = json.loads(
    (ROOT / "tests" / "samples" / "mpesa" / "c2b_confirmation_paybill_plain.json").read_text()
)


#: callbacks name accounts ACC000001..ACC{ACCOUNTS}, round robin, so credits spread out
ACCOUNTS = 1000
#: and are paid from this many numbers, so nothing kept per number (the database's caches,
#: or any of momo's own) is warm for all of them
PAYERS = 50_000


def body_template() -> str:
    """The sample confirmation with ``%s`` for the receipt code, then for the account,
    then for the payer's number."""
    doc = {**SAMPLE, "TransID": "@@CODE@@", "BillRefNumber": "@@ACCOUNT@@", "MSISDN": "@@PAYER@@"}
    text = json.dumps(doc).replace("%", "%%")
    return text.replace("@@CODE@@", "%s").replace("@@ACCOUNT@@", "%s").replace("@@PAYER@@", "%s")


def account(n: int) -> str:
    return f"ACC{n % ACCOUNTS + 1:06d}"


def payer(n: int) -> str:
    """A Kenyan mobile number, one of ``PAYERS``, as M-PESA writes it."""
    return f"2547{n % PAYERS:08d}"


@dataclass(frozen=True)
class LoadResult:
    requests: int
    non_2xx: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    generator: str


WRK_SCRIPT = """
local counter = 0
local threads = 0
local prefix = ""
local path = "/"
local template = [==[%TEMPLATE%]==]

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  prefix = args[1] .. string.format("%02d", tid)
  path = args[2]
end

request = function()
  counter = counter + 1
  local account = string.format("ACC%06d", counter % %ACCOUNTS% + 1)
  local payer = string.format("2547%08d", counter % %PAYERS%)
  local body = string.format(template, prefix .. string.format("%07d", counter), account, payer)
  return wrk.format("POST", path, {["Content-Type"] = "application/json"}, body)
end
"""

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not match:
        raise ValueError(f"cannot read wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(
    url: str, prefix: str, seconds: float, connections: int, threads: int = 2
) -> LoadResult:
    parsed = urlparse(url)
    script = (
        WRK_SCRIPT.replace("%TEMPLATE%", body_template())
        .replace("%ACCOUNTS%", str(ACCOUNTS))
        .replace("%PAYERS%", str(PAYERS))
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
        path = f.name
    try:
        out = subprocess.run(
            [
                "wrk",
                "-t",
                str(threads),
                "-c",
                str(connections),
                "-d",
                f"{max(1, round(seconds))}s",
                "--latency",
                "-s",
                path,
                f"{parsed.scheme}://{parsed.netloc}",
                "--",
                prefix,
                parsed.path,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        Path(path).unlink()
    if out.returncode != 0:
        raise RuntimeError(
            f"wrk failed ({out.returncode}): {out.stderr.strip() or out.stdout.strip()}"
        )
    return read_wrk(out.stdout, seconds)


def read_wrk(out: str, seconds: float) -> LoadResult:
    """wrk's --latency report as a LoadResult."""
    total = int(re.search(r"(\d+) requests in ([\d.]+)(\w+)", out).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return LoadResult(
        requests=total,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        errors=sum(int(g) for g in errors.groups()) if errors else 0,
        seconds=seconds,
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        p50_ms=_ms(re.search(r"^\s*50%\s+(\S+)\s*$", out, re.M).group(1)),  # type: ignore[union-attr]
        p99_ms=_ms(re.search(r"^\s*99%\s+(\S+)\s*$", out, re.M).group(1)),  # type: ignore[union-attr]
        generator="wrk",
    )


def run_python(
    url: str,
    prefix: str,
    seconds: float,
    connections: int,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
) -> LoadResult:
    """A slower stand-in for wrk: keep-alive connections on threads, one request at a time
    each; POSTs of confirmations, or the same GET of ``url`` (its query kept) with ``headers``."""
    parsed = urlparse(url)
    target = f"{parsed.path}?{parsed.query}" if parsed.query else parsed.path
    sent = {"Content-Type": "application/json"} if method == "POST" else {}
    sent.update(headers or {})
    template = body_template()
    latencies: list[float] = []
    counts = {"ok": 0, "non_2xx": 0, "errors": 0}
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker(n: int) -> None:
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
        i = 0
        mine: list[float] = []
        while time.monotonic() < stop:
            i += 1
            body = (
                template % (f"{prefix}{n:02d}{i:07d}", account(i), payer(n * 1000003 + i))
                if method == "POST"
                else None
            )
            started = time.perf_counter()
            try:
                conn.request(method, target, body, sent)
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                with lock:
                    counts["errors"] += 1
                conn.close()
                conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
                continue
            mine.append((time.perf_counter() - started) * 1000)
            with lock:
                counts["ok" if 200 <= status < 300 else "non_2xx"] += 1
        with lock:
            latencies.extend(mine)
        conn.close()

    started = time.monotonic()
    workers = [threading.Thread(target=worker, args=(n,)) for n in range(connections)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.monotonic() - started
    total = counts["ok"] + counts["non_2xx"]
    latencies.sort()
    return LoadResult(
        requests=total,
        non_2xx=counts["non_2xx"],
        errors=counts["errors"],
        seconds=elapsed,
        rps=total / elapsed if elapsed else 0.0,
        p50_ms=statistics.median(latencies) if latencies else float("nan"),
        p99_ms=latencies[int(len(latencies) * 0.99) - 1] if latencies else float("nan"),
        generator="python",
    )


def run_gets(
    url: str,
    headers: dict[str, str],
    seconds: float,
    connections: int,
    *,
    python: bool = False,
    threads: int = 2,
) -> LoadResult:
    """The same GET (``url`` with its query, ``headers``) again and again, as a read load."""
    if have_wrk() and not python:
        out = subprocess.run(
            [
                "wrk",
                "-t",
                str(threads),
                "-c",
                str(connections),
                "-d",
                f"{max(1, round(seconds))}s",
                "--latency",
                *(arg for name, value in headers.items() for arg in ("-H", f"{name}: {value}")),
                url,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(
                f"wrk failed ({out.returncode}): {out.stderr.strip() or out.stdout.strip()}"
            )
        return read_wrk(out.stdout, seconds)
    return run_python(url, "", seconds, connections, method="GET", headers=headers)


def run_load(
    url: str, prefix: str, seconds: float, connections: int, *, python: bool = False
) -> LoadResult:
    if have_wrk() and not python:
        return run_wrk(url, prefix, seconds, connections)
    return run_python(url, prefix, seconds, connections)


def put_backlog(dsn: str, prefix: str, rows: int, offset: int = 0) -> None:
    """``rows`` pending confirmations, each for one of the seeded customers (by account
    reference), from one of ``bench.load.PAYERS`` numbers."""
    template = body_template()
    now = datetime.now(UTC)
    with (
        psycopg.connect(dsn) as conn,
        conn.cursor() as cur,
        cur.copy(
            "COPY inbox (provider, kind, body, headers, status, code, attempts, received_at) "
            "FROM STDIN"
        ) as copy,
    ):
        for n in range(rows):
            code = f"{prefix}{n:08d}"
            body = (template % (code, account(n), payer(offset + n))).encode()
            copy.write_row(("mpesa", "c2b/confirmation", body, "{}", "pending", code, 0, now))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE inbox")
