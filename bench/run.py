"""Run the benchmark suite: ``.venv/bin/python -m bench.run [--quick] [--postgres URL]``.

Part 1 - throughput and latency of the proof request against the framework's ceiling. Every
server is its own subprocess (uvicorn, one worker, log level warning, no access log) with a
fresh temporary data dir and ``--demo``; the load generator (``bench.load``) is another process:

  a   raw Litestar msgspec JSON echo endpoint (``bench.servers echo``)
  b   proof request, in-process register: no HTTP to the register (``bench.servers
      einmal-memory``: the demo composition with an in-memory birth connector)
  b2  proof request, ``einmal serve --demo`` (registers in the same process, over loopback HTTP)
  c   proof request, registers in a separate process (``einmal serve --components registers``,
      broker+cockpit with ``--registers-url``)
  cs  as c, but broker and cockpit each in a process of its own (all three apart: production)
  cpgN  as c on PostgreSQL, broker+cockpit with ``--workers N`` (e.g. cpg1, cpg2; needs
      ``--postgres``; a database ``<name>_einmal_bench_cpgN`` is created afresh beside the
      URL's ``<name>``, so runs on different databases do not drop each other's)

A variant may name its HTTP server: ``a@uvicorn``, ``c@granian`` (``--server`` otherwise):
uvicorn (uvloop + httptools: the shipped default), granian, uvicorn-h11 (asyncio + h11, the
server before decision 0029; echo and b only).

Part 2 - citizen query latency (``GET /v1/me/transfers?limit=50``) with many entries seeded
straight into the cockpit tables (``bench.query``), on SQLite and (``--postgres URL``) PostgreSQL.

Results: ``bench/results/latest.json``; a Markdown summary is printed at the end.
"""

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import litestar
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench import cpu
from bench.profile import summarise
from bench.query import run_queries
from bench.servers import FLOOR_PATH, SERVERS
from einmal.keys import _unb64u
from einmal_app.run import DEFAULT_SERVER

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
EINMAL = str(Path(PYTHON).parent / "einmal")
RESULTS = ROOT / "bench" / "results"
SERVICE = "standesamt-namensdienst-bremen"
PURPOSE = "namensbestimmung"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: Operator token of the benchmark's servers (local, throw-away).
OPS_TOKEN = "bench-operator-token"  # noqa: S105 - throw-away, local servers only


def server_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EINMAL_")}
    env["EINMAL_LOG_LEVEL"] = "warning"
    # One access token serves a whole run (all variants run side by side for minutes).
    env["EINMAL_ACCESS_TOKEN_TTL_S"] = "7200"  # noqa: S105 - a lifetime, not a secret
    env["EINMAL_OPS_TOKEN"] = OPS_TOKEN  # /health/ready and /metrics need it (F5)
    # The per-service token bucket still runs on every request, but its limit (1,000/s by
    # default) must not cap the measurement: on a fast machine b passes 1,000 req/s.
    env["EINMAL_RATE_LIMIT_SERVICE_PER_S"] = "1000000"
    env["EINMAL_RATE_LIMIT_SERVICE_BURST"] = "1000000"
    env["PYTHONPATH"] = str(ROOT)
    return env


class Server:
    """A server subprocess; output goes to a log file in its data dir."""

    def __init__(self, name: str, argv: list[str], port: int, log_path: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.port = port
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(argv, cwd=ROOT, env={**server_env(), **(env or {})},
                                     stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, path: str = "/health/ready", timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base_url + path, timeout=2, headers={
                        "authorization": f"Bearer {OPS_TOKEN}"}).status_code == 200:
                    return
            time.sleep(0.1)
        tail = self.log_path.read_text()[-2000:]
        msg = f"{self.name} did not start; see {self.log_path}:\n{tail}"
        raise RuntimeError(msg)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def _assertion(credentials: dict[str, Any], client_id: str) -> str:
    service = next(s for s in credentials["services"] if s["client_id"] == client_id)
    jwk = service["private_jwk"]
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": credentials["token_endpoint"],
              "iat": now, "exp": now + 60, "jti": str(uuid.uuid4())}
    key = Ed25519PrivateKey.from_private_bytes(_unb64u(jwk["d"]))
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": jwk["kid"]})


def proof_request_bytes(base_url: str, port: int, demo_url: str | None = None,
                        ) -> tuple[bytes, dict[str, Any]]:
    """Token for the Namensdienst (demo credentials), and the exact proof request bytes."""
    credentials = httpx.get(f"{demo_url or base_url}/demo/credentials", timeout=10).json()
    form = {"grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": _assertion(credentials, SERVICE)}
    response = httpx.post(f"{base_url}/v1/token", data=form, timeout=10)
    response.raise_for_status()
    token = response.json()["access_token"]
    child = next(c for c in credentials["citizens"]
                 if c["family"] == "elfe" and c["role"] == "child")
    return build_request(port, token, child), child


def build_request(port: int, token: str, child: dict[str, Any]) -> bytes:
    body = json.dumps({"proof_type": "birth", "subject": child["idnr"], "purpose": PURPOSE,
                       "parameters": {"place_of_birth": child["place_of_birth"],
                                      "birth_date": child["birth_date"]}},
                      separators=(",", ":")).encode()
    head = (f"POST /v1/proof-requests HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
            f"authorization: Bearer {token}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode()
    return head + body


def sanity_check(base_url: str, request: bytes, expect_proof: bool) -> None:
    head, body = request.split(b"\r\n\r\n", 1)
    headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
    headers.pop("host", None)
    headers.pop("content-length", None)
    response = httpx.post(f"{base_url}/v1/proof-requests", content=body, headers=headers,
                          timeout=10)
    if response.status_code != 200:
        msg = f"sanity request failed: {response.status_code} {response.text[:300]}"
        raise RuntimeError(msg)
    if expect_proof and not {"transfer_id", "proof"} <= set(response.json()):
        msg = f"sanity request: no proof in {response.text[:300]}"
        raise RuntimeError(msg)


def run_load(spec: dict[str, Any], workdir: Path) -> dict[str, Any]:
    spec_path = workdir / f"load-{uuid.uuid4().hex[:8]}.json"
    spec_path.write_text(json.dumps(spec))
    out = subprocess.run([PYTHON, "-m", "bench.load", str(spec_path)], cwd=ROOT,
                         env=server_env(), capture_output=True, check=True, text=True)
    return json.loads(out.stdout)


VARIANTS = {
    "a": "raw Litestar msgspec JSON echo (ceiling)",
    "b": "proof request, in-process register (in-memory birth connector, no HTTP)",
    "bs": "as b, but the cockpit (ingest, sealing, log) runs in its own process",
    "b2": "proof request, registers in the same process over loopback HTTP (einmal serve --demo)",
    "c": "proof request, registers in a separate process over HTTP",
    "cs": "as c, with broker and cockpit in processes of their own",
    "cpg": "as c on PostgreSQL, broker+cockpit with N worker processes",
    "f": "floor of c/cs: JSON in, one XPersonenstand query to a register process, JSON out; "
         "no checks, no signing, no records (bench/servers.py: floor)",
    "f2": "floor of b2: as f, the register answered by the same process over loopback HTTP",
}
#: variants whose answer is the request echoed, not a proof
ECHOES = {"a", "f", "f2"}


def split_variant(spec: str, default_server: str) -> tuple[str, str, int]:
    """``c@granian`` -> ("c", "granian", 1); ``cpg2`` -> ("cpg", server, 2)."""
    name, _, server = spec.partition("@")
    server = server or default_server
    if server not in SERVERS:
        msg = f"unknown server {server!r} in {spec!r} (choose from {', '.join(SERVERS)})"
        raise SystemExit(msg)
    workers = 1
    if name.startswith("cpg"):
        workers = int(name[3:] or "1")
        name = "cpg"
    if name not in VARIANTS:
        raise SystemExit(f"unknown variant {spec!r}")
    if server == "uvicorn-h11" and name not in {"a", "b"}:
        raise SystemExit(f"{spec}: uvicorn-h11 only for a and b (einmal serve has no h11)")
    return name, server, workers


def fresh_database(url: str, name: str) -> str:
    """Drop and create the database ``name`` beside the one in ``url``; returns its URL."""
    base, _, _db = url.rpartition("/")

    async def create() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return f"{base}/{name}"


def _chain(*servers: Server) -> None:
    """Wait for each server in turn; stop them all if one does not come up."""
    try:
        for server in servers:
            server.wait_ready()
    except BaseException:
        for server in reversed(servers):
            server.stop()
        raise


def start_variant(spec: str, workdir: Path, args: argparse.Namespace,
                  ) -> tuple[list[Server], Server]:
    """Start the servers of one variant; returns (all servers, the one under load)."""
    variant, server_kind, workers = split_variant(spec, args.server)
    tag = spec.replace("@", "-")
    port = free_port()
    data = workdir / f"data-{tag}"
    data.mkdir()
    bench = [PYTHON, "-m", "bench.servers"]
    serve = [EINMAL, "serve", "--server", server_kind]
    if variant == "a":
        server = Server("echo", [*bench, "echo", "--port", str(port), "--server", server_kind],
                        port, workdir / f"server-{tag}.log")
        return [server], server
    if variant == "f2":
        server = Server("floor", [*bench, "floor", "--port", str(port), "--server", server_kind],
                        port, workdir / f"server-{tag}.log")
        return [server], server
    if variant == "f":
        reg_port = free_port()
        register = Server("floor-register", [*bench, "floor-register", "--port", str(reg_port),
                                             "--server", server_kind],
                          reg_port, workdir / f"server-{tag}-register.log")
        _chain(register)
        server = Server("floor", [
            *bench, "floor", "--port", str(port), "--server", server_kind, "--register-url",
            f"{register.base_url}{FLOOR_PATH}"],
            port, workdir / f"server-{tag}.log")
        try:
            _chain(server)
        except BaseException:
            register.stop()
            raise
        return [register, server], server
    if variant == "b":
        server = Server("einmal-memory", [*bench, "einmal-memory", "--port", str(port),
                                          "--data-dir", str(data), "--server", server_kind],
                        port, workdir / f"server-{tag}.log")
        return [server], server
    if variant == "bs":
        cockpit_port = free_port()
        server = Server("einmal-memory-broker", [
            *bench, "einmal-memory", "--port", str(port), "--data-dir", str(data),
            "--components", "broker", "--cockpit-url", f"http://127.0.0.1:{cockpit_port}",
            "--server", server_kind], port, workdir / f"server-{tag}.log")
        _chain(server)  # creates the broker's channel key the cockpit reads
        cockpit = Server("einmal-cockpit", [
            *serve, "--demo", "--components", "cockpit", "--port", str(cockpit_port),
            "--data-dir", str(data), "--broker-url", server.base_url],
            cockpit_port, workdir / f"server-{tag}-cockpit.log")
        try:
            _chain(cockpit)
        except BaseException:
            server.stop()
            raise
        return [server, cockpit], server
    if variant == "b2":
        server = Server("einmal", [*serve, "--demo", "--port", str(port),
                                   "--data-dir", str(data)], port, workdir / f"server-{tag}.log")
        return [server], server
    reg_port = free_port()
    reg_data = workdir / f"data-{tag}-registers"
    reg_data.mkdir()
    registers = Server("registers", [*serve, "--demo", "--components", "registers",
                                     "--port", str(reg_port), "--data-dir", str(reg_data)],
                       reg_port, workdir / f"server-{tag}-registers.log")
    _chain(registers)
    registers_url = f"{registers.base_url}/registers"
    if variant == "cs":
        cockpit_port = free_port()
        broker = Server("einmal-broker", [
            *serve, "--demo", "--components", "broker", "--port", str(port), "--data-dir",
            str(data), "--registers-url", registers_url, "--cockpit-url",
            f"http://127.0.0.1:{cockpit_port}"], port, workdir / f"server-{tag}.log")
        try:
            _chain(broker)  # creates the broker's channel key the cockpit reads
            cockpit = Server("einmal-cockpit", [
                *serve, "--demo", "--components", "cockpit", "--port", str(cockpit_port),
                "--data-dir", str(data), "--broker-url", broker.base_url],
                cockpit_port, workdir / f"server-{tag}-cockpit.log")
            _chain(cockpit)
        except BaseException:
            broker.stop()
            registers.stop()
            raise
        return [registers, broker, cockpit], broker
    extra: list[str] = []
    if variant == "cpg":
        if not args.postgres:
            registers.stop()
            raise SystemExit("cpgN needs --postgres URL")
        beside = args.postgres.rpartition("/")[2].split("?")[0]  # the URL's database
        extra = ["--database-url", fresh_database(args.postgres, f"{beside}_einmal_bench_{tag}"),
                 "--workers", str(workers)]
    env = {"EINMAL_SHARED_STATE": args.pg_shared_state} if variant == "cpg" else {}
    server = Server("einmal-broker-cockpit", [
        *serve, "--demo", "--components", "broker,cockpit", "--port", str(port),
        "--data-dir", str(data), "--registers-url", registers_url, *extra],
        port, workdir / f"server-{tag}.log", env)
    return [registers, server], server


class Running:
    """A started variant: its servers, the one under load, and the request it gets."""

    def __init__(self, spec: str, workdir: Path, echo_request: bytes,
                 args: argparse.Namespace) -> None:
        self.variant = spec
        kind = split_variant(spec, args.server)[0]
        self.servers, self.server = start_variant(spec, workdir, args)
        try:
            for s in self.servers:
                s.wait_ready()
            if kind in ECHOES:
                self.request = echo_request.replace(
                    b"host: 127.0.0.1:0", f"host: 127.0.0.1:{self.server.port}".encode())
            else:
                # the demo credentials come from the process with the demo (cockpit) part
                demo = self.servers[-1].base_url if kind in {"bs", "cs"} else None
                self.request, _ = proof_request_bytes(self.server.base_url, self.server.port,
                                                      demo)
            sanity_check(self.server.base_url, self.request, expect_proof=kind not in ECHOES)
        except BaseException:
            self.stop()
            raise
        self.pids = [s.proc.pid for s in self.servers]
        #: the closed loop's connections for everything after the rounds: the variant's peak
        self.concurrency = args.levels[0]

    def spec(self, args: argparse.Namespace, **overrides: Any) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.server.port,
                "request": self.request.decode("latin-1"), "server_pids": self.pids,
                "warmup_s": args.warmup, "duration_s": args.duration, "mode": "closed",
                "concurrency": self.concurrency, **overrides}

    def stop(self) -> None:
        for s in reversed(self.servers):
            s.stop()


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(runs, key=lambda r: r["rps"])
    return ordered[(len(ordered) - 1) // 2]


def profile(servers: list[Server], base: dict[str, Any], args: argparse.Namespace,
            workdir: Path, seconds: float, name: str = "b") -> dict[str, Any]:
    """py-spy (sampling, 100 Hz) on every process of a variant at once while the load generator
    saturates it: one profile per process (``profile-<variant>-<server>.txt``)."""
    pyspy = Path(PYTHON).parent / "py-spy"
    if not pyspy.exists():
        return {"error": "py-spy not installed (pip install -e '.[bench]')"}
    load = subprocess.Popen([PYTHON, "-m", "bench.load", str(_spec_file(
        {**base, "mode": "closed", "warmup_s": 1,
         "duration_s": seconds + 2}, workdir))], cwd=ROOT, env=server_env(),
        stdout=subprocess.DEVNULL)
    time.sleep(1.5)
    # --gil: only samples of the thread holding the GIL, i.e. Python work on the CPU (not
    # threads waiting in sqlite's fsync or in select).
    # --subprocesses: granian (and uvicorn with workers) serve from child processes
    spies = []
    for server in servers:
        raw = workdir / f"profile-{server.name}.txt"
        spies.append((server, raw, subprocess.Popen(
            [str(pyspy), "record", "-p", str(server.proc.pid), "-d", str(int(seconds)),
             "-r", "100", "-f", "raw", "-o", str(raw), "--nonblocking", "--gil",
             "--subprocesses"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
    out: dict[str, Any] = {}
    for server, raw, spy in spies:
        text = spy.communicate()[0]
        if spy.returncode != 0 or not raw.exists():
            out[server.name] = {"error": text[-500:]}
            continue
        summary = summarise(raw.read_text())
        keep = RESULTS / (f"profile-{name}.txt" if len(servers) == 1
                          else f"profile-{name}-{server.name}.txt")
        keep.write_text(raw.read_text())
        summary["raw_file"] = str(keep.relative_to(ROOT))
        out[server.name] = summary
    load.wait()
    return out


def _spec_file(spec: dict[str, Any], workdir: Path) -> Path:
    path = workdir / f"load-{uuid.uuid4().hex[:8]}.json"
    path.write_text(json.dumps(spec))
    return path


def _print(variant: str, r: dict[str, Any]) -> None:
    print(f"    {variant}: {r['rps']} req/s  p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms  "
          f"errors {r['errors']}  loadgen cpu {r['loadgen_cpu_cores']}  "
          f"server cpu {r['server_cpu_cores']}", flush=True)
    if r["errors"]:
        print(f"    first error: {r['error_sample']}", flush=True)


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    # the servers name their loop and parser (bench/servers.py, einmal_app/run.py); these say
    # whether uvicorn's optional speed-ups are installed
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return {"cores": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "platform": platform.platform(), "litestar": litestar.__version__
            if hasattr(litestar, "__version__") else _dist_version("litestar"),
            "uvicorn": uvicorn.__version__, "uvicorn_loop": loop, "uvicorn_http": http,
            "granian": _dist_version("granian"), "aiohttp": _dist_version("aiohttp")}


def _dist_version(name: str) -> str:
    return version(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a ~1-minute run")
    parser.add_argument("--postgres", metavar="URL",
                        help="also run the citizen query on PostgreSQL (a database "
                             "<name>_einmal_bench is created beside the one in the URL)")
    parser.add_argument("--only", choices=["http", "query"], help="run only one part")
    parser.add_argument("--variants", default="a,b,bs,b2,c")
    parser.add_argument("--repeats", type=int, default=None,
                        help="closed-loop rounds per variant, interleaved (default 3)")
    parser.add_argument("--cpu-repeats", type=int, default=3,
                        help="CPU-time-per-request measurements per variant (0 = off)")
    parser.add_argument("--cpu-seconds", type=float, default=3.0,
                        help="closed-loop seconds per CPU-time measurement")
    parser.add_argument("--concurrency", default="16,64",
                        help="closed-loop connections, one level or several (default 16,64): "
                             "every round runs each level; a variant's peak is its best level's "
                             "median, and its half-peak rate, CPU time and profile use that "
                             "level")
    parser.add_argument("--warmup", type=float)
    parser.add_argument("--duration", type=float)
    parser.add_argument("--entries", type=int, help="log entries seeded for the citizen query")
    parser.add_argument("--profile", type=float, default=None,
                        help="seconds of py-spy per profiled variant (default 15, 0 = off, "
                             "off in --quick)")
    parser.add_argument("--profile-variants", default=None,
                        help="variants to profile, e.g. cs,b2 (default: b and bs if run)")
    parser.add_argument("--server", choices=SERVERS, default=DEFAULT_SERVER,
                        help=f"HTTP server of variants that name none (default {DEFAULT_SERVER}, "
                             "as einmal serve ships)")
    parser.add_argument("--pg-shared-state", choices=["auto", "database", "memory"],
                        default="auto",
                        help="EINMAL_SHARED_STATE of the cpgN servers (auto = database on "
                             "PostgreSQL: rate limits shared by the workers; memory = per "
                             "worker, to measure the proof path without the shared limiter)")
    parser.add_argument("--half-peak", default=None,
                        help="variants run open-loop at half their peak (default: every proof "
                             "variant; '' = none)")
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args()
    args.warmup = args.warmup if args.warmup is not None else (2 if args.quick else 5)
    args.duration = args.duration if args.duration is not None else (5 if args.quick else 20)
    args.repeats = args.repeats or 3
    try:
        args.levels = [int(x) for x in str(args.concurrency).split(",") if x.strip()]
    except ValueError:
        parser.error(f"--concurrency: numbers separated by commas, not {args.concurrency!r}")
    if not args.levels or min(args.levels) < 1:
        parser.error("--concurrency: at least one level, each >= 1")
    args.entries = args.entries or (50_000 if args.quick else 1_000_000)
    if args.profile is None:
        args.profile = 0 if args.quick else 15
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(PYTHON).name, "-m", "bench.run", *sys.argv[1:]]),
        "machine": machine(),
        "settings": {
            "server": f"{args.server} unless a variant names its own (variant@server); "
                      "1 worker unless cpgN; no access log; EINMAL_LOG_LEVEL=warning; fresh "
                      "temp data dir, --demo, SQLite unless cpgN",
            "load_generator": "bench.load: raw asyncio streams, HTTP/1.1 keep-alive, own process",
            "concurrency": args.levels, "warmup_s": args.warmup,
            "duration_s": args.duration, "quick": args.quick,
        },
    }
    print(f"machine: {report['machine']}", flush=True)
    print(f"load generator: closed loop, {args.concurrency} keep-alive connections (a "
          f"variant's peak: its best level), warm-up "
          f"{args.warmup} s, measured {args.duration} s; open loop at half peak: same "
          f"connection cap, latency from the scheduled send time", flush=True)
    with tempfile.TemporaryDirectory(prefix="einmal-bench-") as tmp:
        workdir = Path(tmp)
        if args.only in (None, "http"):
            report["http"] = run_http(args, workdir)
        if args.only in (None, "query"):
            report["citizen_query"] = run_queries(args, workdir)
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten {args.output}")
    print(markdown(report))


def run_http(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """All variants' servers run side by side; the closed-loop runs are interleaved round by
    round (a, b, ..., a, b, ...) so that a change in the machine's other load hits every
    variant alike, and each round gives its own ratio."""
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    kinds = {v: split_variant(v, args.server)[0] for v in variants}
    echoes = [v for v in variants if kinds[v] == "a"]
    proofs = [v for v in variants if kinds[v] != "a"]
    # A stand-in for the echo alone; with a proof variant in the run the echo gets that
    # variant's exact request bytes (token included), see below.
    echo_request = build_request(0, "x" * 300, {
        "idnr": "12345678901", "place_of_birth": "04011000", "birth_date": "2025-01-01"})
    running: dict[str, Running] = {}
    results: dict[str, Any] = {}
    try:
        for variant in variants:
            print(f"[{variant}] starting ...", flush=True)
            running[variant] = Running(variant, workdir, echo_request, args)
            results[variant] = {"variant": variant, "what": VARIANTS[kinds[variant]],
                                "server_pids": running[variant].pids,
                                "closed_runs_by_concurrency": {n: [] for n in args.levels}}
        brokers = [v for v in proofs if kinds[v] not in ECHOES]
        if brokers:
            # The echo (and the floor) gets the very bytes the broker gets (its real access
            # token, ~450 characters, not a stand-in of another length), only the Host port
            # differs.
            first = running[brokers[0]]
            for echo in (v for v in variants if kinds[v] in ECHOES):
                running[echo].request = first.request.replace(
                    f"host: 127.0.0.1:{first.server.port}".encode(),
                    f"host: 127.0.0.1:{running[echo].server.port}".encode())
        for round_no in range(args.repeats):
            for variant in variants:
                for level in args.levels:
                    print(f"[{variant}] closed loop, {level} connections, round "
                          f"{round_no + 1}/{args.repeats} ...", flush=True)
                    # deferred work of the previous run (outbox, cockpit ingest, sequencing)
                    # must not eat into this one
                    cpu.wait_idle(running[variant].pids)
                    r = run_load(running[variant].spec(args, concurrency=level), workdir)
                    results[variant]["closed_runs_by_concurrency"][level].append(r)
                    _print(variant, r)
        for variant in variants:
            # The peak: the level with the best median. A pipeline of processes that each wait
            # for a durable commit is bound by latency at few connections (docs/benchmarks.md,
            # issue 14, second session), so one level would under-state its peak.
            by_level = results[variant]["closed_runs_by_concurrency"]
            medians = {n: statistics.median(r["rps"] for r in runs)
                       for n, runs in by_level.items()}
            peak = max(medians, key=lambda n: medians[n])
            running[variant].concurrency = peak
            results[variant]["concurrency"] = peak
            results[variant]["rps_median_by_concurrency"] = medians
            runs = results[variant]["closed_runs"] = by_level[peak]
            results[variant]["closed"] = _median_run(runs)
            rps = [r["rps"] for r in runs]
            results[variant]["rps_runs"] = rps
            results[variant]["rps_median"] = statistics.median(rps)
        half = ([v.strip() for v in args.half_peak.split(",") if v.strip()]
                if args.half_peak is not None else proofs)
        for variant in half:
            if variant not in results:
                continue
            rate = max(1.0, round(results[variant]["rps_median"] / 2))
            print(f"[{variant}] open loop at {rate} req/s (half of peak) ...", flush=True)
            cpu.wait_idle(running[variant].pids)
            results[variant]["half_peak"] = run_load(running[variant].spec(
                args, mode="open", rate=rate), workdir)
            _print(variant, results[variant]["half_peak"])
        control = next((v for v in half if v in results and "half_peak" in results[v]), None)
        if echoes and control:
            # Control: the echo at that variant's half-peak rate - the open-loop latency this
            # machine and load generator give a trivial handler at the same arrival rate.
            echo = echoes[0]
            rate = results[control]["half_peak"]["settings"]["rate"]
            print(f"[{echo}] open loop at {rate} req/s ({control}'s half peak; control) ...",
                  flush=True)
            cpu.wait_idle(running[echo].pids)
            results[echo]["control"] = {"of": control, **run_load(running[echo].spec(
                args, mode="open", rate=rate), workdir)}
            _print(echo, results[echo]["control"])
        if args.cpu_repeats:
            for variant in variants:
                print(f"[{variant}] server CPU time per request ({args.cpu_repeats} x "
                      f"{args.cpu_seconds} s) ...", flush=True)
                r = running[variant]
                results[variant]["cpu"] = cpu.measure(
                    r.pids, lambda o, r=r: run_load(r.spec(args, **o), workdir),
                    args.cpu_seconds, args.cpu_repeats)
                c = results[variant]["cpu"]
                by_server = {s.name: c["repeats"][0]["cpu_us_per_request_by_pid"][str(pid)]
                             for s, pid in zip(r.servers, r.pids, strict=True)}
                c["by_server_first_repeat"] = by_server
                c["by_server_median"] = {
                    s.name: statistics.median(x["cpu_us_per_request_by_pid"][str(pid)]
                                              for x in c["repeats"])
                    for s, pid in zip(r.servers, r.pids, strict=True)}
                print(f"    {variant}: {c['median_us']} CPU-us/request (min {c['min_us']}, "
                      f"max {c['max_us']}; by process, median: {c['by_server_median']})",
                      flush=True)
        profiled = ([v.strip() for v in args.profile_variants.split(",") if v.strip()]
                    if args.profile_variants else [v for v in ("b", "bs") if v in running])
        if args.profile:
            for variant in profiled:
                if variant in running:
                    r = running[variant]
                    results[variant]["profile"] = profile(
                        r.servers, r.spec(args), args, workdir, args.profile,
                        name=variant.replace("@", "-"))
    finally:
        for r in running.values():
            r.stop()
    results["ratios"] = ratios(results, echoes, proofs)
    results["targets"] = targets(results, echoes, kinds)
    return results


def ratios(results: dict[str, Any], echoes: list[str], proofs: list[str]) -> dict[str, Any]:
    """Each proof variant against each echo: per round (same run), and by CPU time."""
    out: dict[str, Any] = {}
    for variant in proofs:
        v = results[variant]
        for echo in echoes:
            a = results[echo]
            per_round = [round(x["rps"] / y["rps"], 3) for x, y in
                         zip(v["closed_runs"], a["closed_runs"], strict=True) if y["rps"]]
            out[f"{variant}/{echo}"] = round(statistics.median(per_round), 3)
            out[f"{variant}/{echo} per round"] = per_round
            if "cpu" in v and "cpu" in a and v["cpu"]["median_us"]:
                out[f"{variant}/{echo} by CPU time"] = round(a["cpu"]["median_us"]
                                                              / v["cpu"]["median_us"], 3)
    return out


def targets(results: dict[str, Any], echoes: list[str], kinds: dict[str, str],
            ) -> dict[str, Any]:
    """Issue 14's targets, against the ceiling: the echo with the highest median req/s."""
    if not echoes:
        return {}
    ceiling = max(echoes, key=lambda e: results[e]["rps_median"])
    a = results[ceiling]
    out: dict[str, Any] = {"ceiling": ceiling}
    for variant, kind in kinds.items():
        v = results[variant]
        ratio = statistics.median(x["rps"] / y["rps"] for x, y in
                                  zip(v["closed_runs"], a["closed_runs"], strict=True))
        if kind in {"c", "cs"}:
            out[f"{variant}/{ceiling} >= 0.30"] = [round(ratio, 3), ratio >= 0.30]
            h = v.get("half_peak")
            if h and h["p99_ms"] is not None:
                out[f"{variant} p99 at half peak <= 25 ms"] = [h["p99_ms"], h["p99_ms"] <= 25]
            if "cpu" in v and "cpu" in a:
                broker = next(n for n in v["cpu"]["by_server_median"] if n.startswith("einmal-b"))
                times = v["cpu"]["by_server_median"][broker] / a["cpu"]["median_us"]
                out[f"{variant} {broker} CPU <= 3x echo"] = [round(times, 2), times <= 3]
        if kind == "b2":
            out[f"{variant}/{ceiling} >= 0.20"] = [round(ratio, 3), ratio >= 0.20]
        if kind in {"f", "f2"}:
            # not a target: the most any broker on this stack could reach (decision 0043)
            out[f"{variant}/{ceiling} (floor)"] = round(ratio, 3)
            if "cpu" in v and "cpu" in a:
                relay = v["cpu"]["by_server_median"]["floor"] / a["cpu"]["median_us"]
                out[f"{variant} floor process CPU x echo"] = round(relay, 2)
    return out


def markdown(report: dict[str, Any]) -> str:
    lines = [f"Run {report['date']}, `{report['command']}`, {report['machine']['cores']} cores "
             f"({report['machine']['cpu']}), Python {report['machine']['python']}", ""]
    http = report.get("http")
    if http:
        lines += [("| variant | peak req/s at connections (rounds) [median by connections] "
                   "| p50 ms | p99 ms | errors "
                   "| half-peak rate | p50 ms | p99 ms | CPU-us/req (min-max) | by process |"),
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for variant, r in http.items():
            if not isinstance(r, dict) or "closed" not in r:
                continue
            c, h = r["closed"], r.get("half_peak")
            half = (f"{h['settings']['rate']} | {h['p50_ms']} | {h['p99_ms']}"
                    if h else "- | - | -")
            cpu_ = r.get("cpu")
            cpu_text = (f"{cpu_['median_us']} ({cpu_['min_us']}-{cpu_['max_us']}) | "
                        + ", ".join(f"{k} {v}" for k, v in cpu_["by_server_median"].items())
                        if cpu_ else "- | -")
            levels = r.get("rps_median_by_concurrency", {})
            by_level = (" [" + ", ".join(f"{n}: {x:,.0f}" for n, x in levels.items()) + "]"
                        if len(levels) > 1 else "")
            lines.append(f"| {variant} | {r['rps_median']:,.0f} at {c['settings']['concurrency']}"
                         f" ({', '.join(f'{x:,.0f}' for x in r['rps_runs'])}){by_level} "
                         f"| {c['p50_ms']} "
                         f"| {c['p99_ms']} | {c['errors']} | {half} | {cpu_text} |")
        lines += ["", "ratios: " + ", ".join(f"{k} = {v}" for k, v in http["ratios"].items()
                                              if "per round" not in k),
                  "targets: " + ", ".join(f"{k}: {v}" for k, v in http["targets"].items()), ""]
    query = report.get("citizen_query")
    if query:
        lines += ["| store | entries | index rows | citizen's entries | seeding s | p50 ms "
                  "| p99 ms | requests |", "|---|---|---|---|---|---|---|---|"]
        for store, q in query.items():
            if "error" in q:
                lines.append(f"| {store} | error: {q['error']} |")
                continue
            lines.append(f"| {store} | {q['entries']} | {q['index_rows']} | "
                         f"{q['citizen_entries']} | {q['seed_s']} | {q['p50_ms']} | "
                         f"{q['p99_ms']} | {q['requests']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
