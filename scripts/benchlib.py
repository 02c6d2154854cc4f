"""Shared helpers of the load and benchmark scripts (standard library only).

Starts release binaries on free ports with temporary directories, talks HTTP like a client,
runs `wrk` and reads its figures, and samples a process's resident memory.
"""

import base64
import contextlib
import http.client
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import zlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
# Another build can be measured with IMAGEAPI_BENCH_BIN=/path/to/target/release.
BIN = pathlib.Path(os.environ.get("IMAGEAPI_BENCH_BIN", ROOT / "target" / "release"))
ADMIN = ("admin", "bench-admin-password")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def multipart(data, filename="image.jpg", boundary="imageapibench"):
    head = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{filename}\"\r\n"
        f"Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class Client:
    """One keep-alive HTTP/1.1 connection; reconnects after an error."""

    def __init__(self, base, authorization=None, timeout=60, source=None):
        m = re.match(r"http://([^:/]+):(\d+)", base)
        self.host, self.port = m.group(1), int(m.group(2))
        self.authorization = authorization
        self.timeout = timeout
        self.source = (source, 0) if source else None
        self.conn = None

    def request(self, method, path, body=None, content_type=None, headers=None):
        """Returns (status, headers dict, body bytes)."""
        h = dict(headers or {})
        if self.authorization and "Authorization" not in h:
            h["Authorization"] = self.authorization
        if content_type:
            h["Content-Type"] = content_type
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout,
                                                       source_address=self.source)
            try:
                self.conn.request(method, path, body=body, headers=h)
                resp = self.conn.getresponse()
                data = resp.read()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
            except (ConnectionError, http.client.HTTPException) as e:
                self.conn.close()
                self.conn = None
                if attempt == 1:
                    raise
                last = e  # a keep-alive connection the server closed: retry once
        raise last  # unreachable

    def json(self, method, path, payload=None, expect=(200, 201)):
        body = json.dumps(payload).encode() if payload is not None else None
        status, _, data = self.request(method, path, body, "application/json" if body else None)
        if status not in expect:
            sys.exit(f"{method} {path}: {status} {data[:300]!r}")
        return json.loads(data) if data else None

    def upload(self, data, filename="image.jpg", distinct=True):
        """Uploads `data`; by default as new bytes each time (see `unique`), since the same
        bytes again from one user are the image already held (200), not a new one."""
        body, ctype = multipart(unique(data) if distinct else data, filename)
        return self.request("POST", "/api/v1/images", body, ctype)


_uploads = iter(range(1 << 62))


def unique(data, tag=None):
    """The same picture as new bytes: a JPEG comment segment after SOI, or a PNG tEXt chunk
    after IHDR, carrying `tag` (by default a process-wide counter and the process id)."""
    text = f"bench {os.getpid()}-{next(_uploads) if tag is None else tag}".encode()
    if data[:2] == b"\xff\xd8":
        return data[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + data[2:]
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return data  # not an image: sent as it is (tests of refusals)
    chunk = b"tEXt" + b"bench\x00" + text
    crc = zlib.crc32(chunk).to_bytes(4, "big")
    return data[:33] + (len(chunk) - 4).to_bytes(4, "big") + chunk + crc + data[33:]


def wait_line(proc, prefix, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith(prefix):
            return line.strip()
    sys.exit(f"no line starting with {prefix!r}")


def rss_mb(pid):
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return float("nan")


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGEAPI_", "AWS_"))}
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Stack:
    """Processes and a temporary folder, cleaned up on exit."""

    def __init__(self, prefix):
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix=prefix))
        self.procs = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=40)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def redis(self):
        port = free_port()
        self.procs.append(subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        return f"redis://127.0.0.1:{port}/"

    def s3(self):
        """A private s3s-fs with a bucket `imageapi`; returns the env naming `s3://imageapi/blobs`."""
        binary = shutil.which("s3s-fs") or str(pathlib.Path.home() / ".cargo" / "bin" / "s3s-fs")
        if not os.path.exists(binary):
            sys.exit("s3s-fs is missing: cargo install s3s-fs --version 0.14.1 --features binary --locked")
        root = self.tmp / "s3"
        (root / "imageapi").mkdir(parents=True)
        port = free_port()
        access, secret = "bench-key", "bench-secret-0123456789"
        self.procs.append(subprocess.Popen(
            [binary, "--host", "127.0.0.1", "--port", str(port), "--access-key", access, "--secret-key", secret,
             str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        return {"IMAGEAPI_BLOB_URL": "s3://imageapi/blobs", "IMAGEAPI_S3_ENDPOINT": f"http://127.0.0.1:{port}",
                "AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret, "IMAGEAPI_S3_REGION": "us-east-1"}

    def server(self, **env):
        settings = {"IMAGEAPI_BIND": "127.0.0.1:0", "IMAGEAPI_DATA_DIR": self.tmp / "data",
                    "IMAGEAPI_ADMIN_USERNAME": ADMIN[0], "IMAGEAPI_ADMIN_PASSWORD": ADMIN[1]}
        settings.update(env)
        env = clean_env(**settings)
        wrap = os.environ.get("IMAGEAPI_BENCH_WRAP", "").split()
        proc = subprocess.Popen(wrap + [str(BIN / "imageapi-server")], env=env, stdout=subprocess.PIPE, text=True,
                                stderr=open(self.tmp / f"server-{len(self.procs)}.log", "w"))
        self.procs.append(proc)
        base = wait_line(proc, "imageapi-server listening on ").rsplit(" ", 1)[1]
        return proc, base

    def worker(self, name, **env):
        env = clean_env(IMAGEAPI_DATA_DIR=self.tmp / "data", IMAGEAPI_BLOB_DIR=self.tmp / "data" / "blobs",
                        IMAGEAPI_WORKER_NAME=name, RUST_LOG="warn", **env)
        proc = subprocess.Popen([str(BIN / "imageapi-worker")], env=env, stdout=subprocess.PIPE, text=True,
                                stderr=open(self.tmp / f"worker-{name}.log", "w"))
        self.procs.append(proc)
        wait_line(proc, "imageapi-worker ")
        return proc


POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"


def psql(url, sql):
    subprocess.run(["psql", "--no-psqlrc", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
                   check=True, capture_output=True)


@contextlib.contextmanager
def scratch_database(admin_url=POSTGRES, prefix="imageapi_bench"):
    """A fresh PostgreSQL database for one run; yields its URL and drops it afterwards."""
    require("psql", "postgresql-client")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    psql(admin_url, f"CREATE DATABASE {name}")
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        psql(admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def make_user(base, username, tier, password="bench-user-password", lift_limits=True):
    """A user on `tier` and an API token. The tier's limits on images, storage and uploads per
    hour are lifted first (benchmarks measure speed, not quotas) unless `lift_limits` is false."""
    admin = Client(base, basic(*ADMIN))
    if lift_limits:
        admin.json("PATCH", f"/api/v1/admin/tiers/{tier}",
                   {"max_images": None, "max_storage_bytes": None, "uploads_per_hour": None})
    user = admin.json("POST", "/api/v1/admin/users", {"username": username, "password": password, "tier": tier})
    token = admin.json("POST", f"/api/v1/admin/users/{user['id']}/tokens")["token"]
    return user, password, token


def require(tool, package):
    if shutil.which(tool) is None:
        sys.exit(f"{tool} is missing (Debian: apt-get install {package})")


WRK_SCRIPT = """
local counter = 0
local paths = {}
for line in io.lines(os.getenv("WRK_PATHS")) do paths[#paths + 1] = line end
request = function()
  counter = counter + 1
  return wrk.format(nil, paths[(counter % #paths) + 1])
end
"""


def wrk(url, connections=16, seconds=10, headers=None, paths=None, threads=2, script=None, env=None):
    """Runs wrk; returns {'rps', 'p50_ms', 'p99_ms', 'errors', 'non2xx', 'requests'}."""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    run_env = dict(os.environ, **(env or {}))
    tmp = None
    if paths is not None:
        tmp = tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False)
        tmp.write("\n".join(paths) + "\n")
        tmp.close()
        run_env["WRK_PATHS"] = tmp.name
        script = WRK_SCRIPT
    if script is not None:
        lua = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
        lua.write(script)
        lua.close()
        cmd += ["-s", lua.name]
    cmd.append(url)
    out = subprocess.run(cmd, capture_output=True, text=True, env=run_env).stdout
    if tmp:
        os.unlink(tmp.name)
    if script is not None:
        os.unlink(lua.name)
    return parse_wrk(out)


def _ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def parse_wrk(out):
    res = {"rps": 0.0, "p50_ms": float("nan"), "p99_ms": float("nan"), "errors": 0, "non2xx": 0, "requests": 0}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        res["rps"] = float(m.group(1))
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if m:
            res[key] = _ms(m.group(1), m.group(2))
    m = re.search(r"(\d+) requests in", out)
    if m:
        res["requests"] = int(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        res["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        res["errors"] = sum(int(g) for g in m.groups())
    res["raw"] = out
    return res
