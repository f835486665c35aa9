#!/usr/bin/env python3
"""Scale of config: a generated config with N routes (default 10,000; ROUTES=...), measured with
the real binary on 127.0.0.1:

- `check` time (wall, best of 3),
- RSS after start with it loaded, and idle RSS with the one-route quick-start shape,
- reload time: from the edge's "SIGHUP: reloading" log line to its "config reloaded" line
  (median of 5; polling /metrics would measure the scrape: with one histogram per route it is
  about 13 MB at 10,000 routes), and that the new generation shows on /metrics,
- that a request to the last route still gets through.

    python3 scripts/scale.py BIN        (prints one line per figure and a JSON line)
"""
import json, os, signal, statistics, subprocess, sys, tempfile, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import loadbench as lb  # noqa: E402

N = int(os.environ.get("ROUTES", "10000"))


def config(work, port, mport, up, n, marker):
    lines = [
        f'server: {{ threads: 1, pid_file: "{work}/pid", upgrade_sock: "{work}/sock" }}',
        f'listeners: [ {{ address: "127.0.0.1:{port}" }} ]',
        f'metrics: {{ address: "127.0.0.1:{mport}" }}',
        "log: { access: false, level: info, format: json }",
        f'upstreams: {{ up: {{ url: "http://127.0.0.1:{up}" }} }}',
        "routes:",
    ]
    for i in range(n):
        # Distinct prefixes two levels deep, as a large API surface would have.
        lines.append(f"  - {{ id: r{i}, path: /svc{i // 100}/api{i % 100}/{marker}, upstream: up, public: true }}")
    return "\n".join(lines) + "\n"


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def generation(mport):
    with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("authedge_config_generation"):
                return int(float(line.split()[-1]))
    return 0


def reload_times(log):
    """Seconds from each "SIGHUP: reloading" line to the next "config reloaded" line."""
    from datetime import datetime
    began, took = None, []
    with open(log) as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            msg = rec.get("fields", {}).get("message", "")
            ts = datetime.fromisoformat(rec["timestamp"].replace("Z", "+00:00")).timestamp()
            if msg.startswith("SIGHUP: reloading"):
                began = ts
            elif msg == "config reloaded" and began is not None:
                took.append(ts - began)
                began = None
    return took


def start(binary, path, mport, log=None):
    out = open(log, "w") if log else subprocess.DEVNULL
    p = subprocess.Popen([binary, "run", "--config", path], stdout=out,
                         stderr=subprocess.DEVNULL, env={k: v for k, v in os.environ.items() if k != "RUST_LOG"})
    lb.wait_port(mport, timeout=60)
    return p


def main():
    binary = sys.argv[1]
    work = tempfile.mkdtemp(prefix="authedge-scale-")
    up = lb.free_port()
    echo = subprocess.Popen([sys.executable, "-m", "http.server", str(up), "--bind", "127.0.0.1",
                             "--directory", work], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [echo]
    try:
        port, mport = lb.free_port(), lb.free_port()
        path = f"{work}/big.yaml"
        with open(path, "w") as f:
            f.write(config(work, port, mport, up, N, "a"))
        checks = []
        for _ in range(3):
            t = time.perf_counter()
            subprocess.run([binary, "check", "--config", path], check=True, capture_output=True)
            checks.append(time.perf_counter() - t)
        log = f"{work}/edge.log"
        edge = start(binary, path, mport, log)
        procs.append(edge)
        time.sleep(1)
        big_rss = rss_kb(edge.pid)
        reloads = []
        for k in range(5):
            gen = generation(mport)
            with open(path, "w") as f:
                f.write(config(work, port, mport, up, N, "b" if k % 2 == 0 else "a"))
            t = time.perf_counter()
            os.kill(edge.pid, signal.SIGHUP)
            while generation(mport) == gen:
                if time.perf_counter() - t > 30:
                    raise SystemExit("reload never became visible")
                time.sleep(0.05)
        reloads = reload_times(log)
        marker = "b"  # the five reloads wrote b, a, b, a, b
        last = f"http://127.0.0.1:{port}/svc{(N - 1) // 100}/api{(N - 1) % 100}/{marker}/x"
        try:
            status = urllib.request.urlopen(last, timeout=5).status
        except urllib.error.HTTPError as e:
            status = e.code  # the directory listing server answers 404 for /x: it was reached
        after_rss = rss_kb(edge.pid)
        edge.terminate()
        edge.wait(timeout=30)
        small = f"{work}/small.yaml"
        port2, mport2 = lb.free_port(), lb.free_port()
        with open(small, "w") as f:
            f.write(config(work, port2, mport2, up, 1, "a"))
        idle = start(binary, small, mport2)
        procs.append(idle)
        time.sleep(1)
        idle_rss = rss_kb(idle.pid)
        res = {
            "routes": N,
            "check_s_best": round(min(checks), 3),
            "reload_ms_median": round(statistics.median(reloads) * 1000, 1),
            "reload_ms_all": [round(r * 1000, 1) for r in reloads],
            "rss_mb_loaded": round(big_rss / 1024, 1),
            "rss_mb_after_5_reloads": round(after_rss / 1024, 1),
            "rss_mb_idle_one_route": round(idle_rss / 1024, 1),
            "last_route_reached_upstream": status == 404,
        }
        print(f"routes: {N}")
        print(f"check: {res['check_s_best']} s (best of 3)")
        print(f"reload (SIGHUP received to new snapshot swapped in): median {res['reload_ms_median']} ms, all {res['reload_ms_all']}")
        print(f"RSS loaded: {res['rss_mb_loaded']} MB, after 5 reloads: {res['rss_mb_after_5_reloads']} MB, idle one-route: {res['rss_mb_idle_one_route']} MB")
        print(f"last route reached the upstream: {res['last_route_reached_upstream']}")
        print(json.dumps(res))
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()


if __name__ == "__main__":
    main()
