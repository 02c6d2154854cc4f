#!/usr/bin/env python3
"""Thumbnail throughput and upload-to-ready latency through the Redis queue.

Starts a private redis-server, a release imageapi-server with IMAGEAPI_REDIS_URL and
imageapi-worker processes (release binaries from target/release), all on free ports with
temporary directories, and measures:

  throughput  jobs per second: the corpus uploaded REPEAT times with no worker running,
              then the workers started; time from their "ready" line until every thumbnail
              is ready.
  latency     upload-to-ready: with the workers idle, each corpus file uploaded alone; time
              from the 201 until the image lists every thumbnail ready (polled every 10 ms).

Usage (from the workspace root):
  cargo build --release -p imageapi-server -p imageapi-worker
  python3 scripts/queue-bench.py [--workers 1] [--threads 2] [--repeat 5]

Standard library only. Every job is one image on the Premium tier (200 and 400 px).
"""

import argparse
import base64
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import benchlib as b  # noqa: E402
from benchlib import free_port, wait_line  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
BIN = ROOT / "target" / "release"


def request(method, url, auth, body=None, content_type=None):
    req = urllib.request.Request(url, data=body, method=method)
    req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    if content_type:
        req.add_header("Content-Type", content_type)
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read() or b"null")


def upload(base, auth, path):
    boundary = "bench" + os.urandom(8).hex()
    # New bytes each time (a JPEG comment or PNG text chunk): the same bytes again from one
    # user are the image already held, and would make no job.
    data = b.unique(path.read_bytes())
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{path.name}\"\r\n"
        f"Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return request("POST", f"{base}/api/v1/images", auth, body, f"multipart/form-data; boundary={boundary}")


def ready(image):
    return all(t["status"] == "ready" for t in image["thumbnails"])


def wait_all_ready(base, auth, ids, poll=0.01, timeout=600):
    """Returns {id: time first seen ready}."""
    seen = {}
    deadline = time.monotonic() + timeout
    while len(seen) < len(ids):
        if time.monotonic() > deadline:
            sys.exit(f"timed out: {len(seen)}/{len(ids)} ready")
        for image_id in ids:
            if image_id in seen:
                continue
            image = request("GET", f"{base}/api/v1/images/{image_id}", auth)
            if any(t["status"] == "failed" for t in image["thumbnails"]):
                sys.exit(f"a thumbnail failed: {image}")
            if ready(image):
                seen[image_id] = time.monotonic()
        time.sleep(poll)
    return seen


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--threads", type=int, default=0, help="render threads per worker (0: cores)")
    parser.add_argument("--repeat", type=int, default=5, help="times the corpus is uploaded for throughput")
    args = parser.parse_args()

    files = sorted(p for p in CORPUS.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        sys.exit(f"no corpus images in {CORPUS}")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="imageapi-bench-"))
    procs = []
    try:
        redis_port = free_port()
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        redis_url = f"redis://127.0.0.1:{redis_port}/"
        env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEAPI_")}
        env.update(IMAGEAPI_REDIS_URL=redis_url, IMAGEAPI_BIND="127.0.0.1:0", IMAGEAPI_DATA_DIR=str(tmp / "data"),
                   IMAGEAPI_ADMIN_USERNAME="admin", IMAGEAPI_ADMIN_PASSWORD="bench-admin-pw", RUST_LOG="warn")
        time.sleep(0.3)
        server = subprocess.Popen([str(BIN / "imageapi-server")], env=env, stdout=subprocess.PIPE, text=True,
                                  stderr=open(tmp / "server.log", "w"))
        procs.append(server)
        base = wait_line(server, "imageapi-server listening on ").rsplit(" ", 1)[1]
        admin = "admin:bench-admin-pw"
        request("POST", f"{base}/api/v1/admin/users", admin,
                json.dumps({"username": "bench", "password": "bench-password", "tier": "premium"}).encode(),
                "application/json")
        user = "bench:bench-password"

        def start_workers():
            started = []
            for n in range(args.workers):
                wenv = dict(env, IMAGEAPI_BLOB_DIR=str(tmp / "data" / "blobs"), IMAGEAPI_WORKER_NAME=f"bench-{n}")
                if args.threads:
                    wenv["IMAGEAPI_WORKER_THREADS"] = str(args.threads)
                w = subprocess.Popen([str(BIN / "imageapi-worker")], env=wenv, stdout=subprocess.PIPE, text=True,
                                     stderr=open(tmp / f"worker-{n}.log", "w"))
                procs.append(w)
                started.append(w)
            for w in started:
                wait_line(w, "imageapi-worker ")

        # Throughput: a backlog, then the workers.
        ids = [upload(base, user, f)["id"] for _ in range(args.repeat) for f in files]
        start_workers()
        # From the moment every worker said it is ready (process start-up is not counted;
        # the first ones may already have begun).
        t0 = time.monotonic()
        seen = wait_all_ready(base, user, ids, poll=0.05)
        elapsed = max(seen.values()) - t0
        throughput = len(ids) / elapsed

        # Latency: one image at a time into idle workers.
        latencies = {}
        for f in files:
            image_id = upload(base, user, f)["id"]
            accepted = time.monotonic()
            done = wait_all_ready(base, user, [image_id], poll=0.01)[image_id]
            latencies[f.name] = done - accepted

        threads = args.threads or os.cpu_count()
        print(f"workers={args.workers} threads/worker={threads} cores={os.cpu_count()} jobs={len(ids)}")
        print(f"throughput: {throughput:.2f} jobs/s ({elapsed:.2f} s for {len(ids)} jobs, each 200+400 px)")
        for name, seconds in latencies.items():
            print(f"  upload-to-ready {name:45s} {seconds * 1000:7.0f} ms")
        print(f"median upload-to-ready: {statistics.median(latencies.values()) * 1000:.0f} ms")
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
