#!/usr/bin/env python3
"""A/B of the Redis-limited opaque route: OLD and NEW authedge binaries against one redis-server, beside
NEW with memory state. Usage: python3 scripts/ab_redis.py OLD_BIN NEW_BIN (ROUNDS=5, 4 s each; 127.0.0.1 only)."""
import os, sys, subprocess, tempfile, time, random, statistics, urllib.request
OLD, NEW = sys.argv[1], sys.argv[2]
sys.argv = [sys.argv[0], NEW]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import loadbench as lb
work = tempfile.mkdtemp(prefix="ab-")
procs = []
try:
    up = lb.free_port()
    open(f"{work}/up.conf", "w").write(f"""worker_processes 1; daemon off; pid {work}/up.pid; error_log {work}/up.err;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{up}; location / {{ return 200 "ok\\n"; }} }} }}
""")
    procs.append(subprocess.Popen(["nginx", "-p", work, "-c", f"{work}/up.conf"]))
    rport = lb.free_port()
    procs.append(subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no", "--dir", work], stdout=subprocess.DEVNULL))
    h = subprocess.run([NEW, "hash-password"], input=b"bench-password\n", check=True, capture_output=True).stdout.decode().strip()
    edges = {}
    for name, binary, state in [("old redis", OLD, True), ("new redis", NEW, True), ("memory", NEW, False)]:
        port, mport = lb.free_port(), lb.free_port()
        st = f'state: {{ redis: {{ url: "redis://127.0.0.1:{rport}/0", timeout: 50ms }} }}\n' if state else ""
        tag = name.replace(" ", "-")
        cfg = f"""server: {{ threads: 1, pid_file: "{work}/{tag}.pid", upgrade_sock: "{work}/{tag}.sock" }}
listeners: [ {{ address: "127.0.0.1:{port}" }} ]
metrics: {{ address: "127.0.0.1:{mport}" }}
log: {{ access: false, level: warn }}
upstreams: {{ fast: {{ url: "http://127.0.0.1:{up}" }} }}
opaque:
  limited:
    keys: [ {{ id: k1, secret: {{ value: "loadbench-secret-0123456789abcdef0123456789" }} }} ]
    token_lifetime: 1h
    rate_limit: {{ requests_per_second: 1000000, burst: 1000000 }}
    users: [ {{ id: "1", username: bench, password_hash: "{h}", roles: [bench] }} ]
{st}routes:
  - {{ id: l, path: /l, upstream: fast, auth: [ {{ type: opaque, realm: limited }} ] }}
"""
        open(f"{work}/{tag}.yaml", "w").write(cfg)
        p = subprocess.Popen([binary, "run", "--config", f"{work}/{tag}.yaml"], stdout=subprocess.DEVNULL,
                             env={**os.environ, "RUST_LOG": "warn"})
        procs.append(p)
        edges[name] = (port, mport, p)
    for name, (port, mport, p) in edges.items():
        lb.wait_port(port)
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{mport}/readyz", timeout=1); break
            except OSError:
                time.sleep(0.1)
    toks = {n: lb.opaque_token(port) for n, (port, _, _) in edges.items()}
    rounds = int(os.environ.get("ROUNDS", "5"))
    res = {n: [] for n in edges}
    for r in range(rounds):
        for n in random.sample(list(edges), len(edges)):
            port, _, p = edges[n]
            res[n].append(lb.wrk(f"http://127.0.0.1:{port}/l", [f"Authorization: Bearer {toks[n]}"], [p.pid], seconds=4))
    for n, rs in res.items():
        print(f"{n:12s} rps={statistics.median(x['rps'] for x in rs):9.0f} cpu_us={statistics.median(x['cpu_us'] for x in rs):6.1f} p99={statistics.median(x['p99_ms'] for x in rs):.2f}ms errors={sum(x['errors'] for x in rs)}")
    for n in ("old redis", "new redis"):
        ratios = [a["rps"] / b["rps"] for a, b in zip(res[n], res["memory"])]
        print(f"{n} / memory: median ratio {statistics.median(ratios):.3f}")
finally:
    for p in procs:
        p.terminate()
