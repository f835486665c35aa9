#!/usr/bin/env python3
"""Instructions per proxied request, counted by callgrind (deterministic, unlike requests/s on a
shared machine): authedge's public, jwt, opaque (and oidc) routes, and the bare Pingora proxy
when given, as it is and with authedge's default timeouts (`bare_proxy --timeouts`).

    python3 scripts/callgrind.py BIN [BARE]      (SECONDS_PER_ROUTE=8 by default)

The edge runs under `valgrind --tool=callgrind` with instrumentation off; for each route the
script warms the route up (2 s of wrk, not counted), turns instrumentation on, sends requests
with wrk (`-t1 -c10`) for SECONDS_PER_ROUTE, turns it off and dumps, then divides the dump's
instruction total by the requests wrk reports. Every thread is counted, idle timers included,
so a target that serves fewer requests in the window pays a little more per request: repeated
runs of the same binary agree to about 3%. Startup, config load and token issue are not
counted. Only 127.0.0.1 is contacted. The config below is accepted by every authedge since the
foundation, so two builds (before and after a change) can be compared with the same script.
"""
import glob, os, re, subprocess, sys, tempfile, time

import loadbench as lb  # noqa: E402  (free_port, wait_port, mint_rs256, opaque_token)

SECONDS = int(os.environ.get("SECONDS_PER_ROUTE", "8"))
CONFIG = """server: {{ threads: 1, work_stealing: false, pid_file: "{dir}/edge.pid", upgrade_sock: "{dir}/edge.sock" }}
listeners: [ {{ address: "127.0.0.1:{port}" }} ]
log: {{ access: false, level: warn }}
upstreams: {{ fast: {{ url: "http://127.0.0.1:{upstream}" }} }}
opaque:
  bench:
    keys: [ {{ id: k1, secret: {{ value: "loadbench-secret-0123456789abcdef0123456789" }} }} ]
    token_lifetime: 1h
    users: [ {{ id: "1", username: bench, password_hash: "{bench_hash}", roles: [bench] }} ]
routes:
  - {{ id: public, path: /public, upstream: fast, public: true }}
  - id: jwt
    path: /jwt
    upstream: fast
    auth: [ {{ type: jwt, providers: [ {{ issuer: "https://issuer.bench", keys_file: "{dir}/jwt-pub.pem" }} ], audience: bench }} ]
  - {{ id: opaque, path: /opaque, upstream: fast, auth: [ {{ type: opaque, realm: bench }} ] }}
{oidc_route}"""

# With the provider fixture (tests/fixtures/oidc-provider, Node): the oidc route, as
# scripts/loadbench.py configures it, measured behind a live session cookie.
OIDC = """oidc:
  bench:
    issuer: "{issuer}"
    client_id: web
    client_secret: {{ value: secret-web }}
    scopes: [openid, email, profile]
    cookie_secrets: [ {{ id: k1, secret: {{ value: "loadbench-cookie-secret-0123456789abcdef" }} }} ]
    cookie_secure: false
    email_domains: [example.com]
"""
OIDC_ROUTE = """  - { id: oidc, path: /oidc, upstream: fast, auth: [ { type: oidc, provider: bench } ] }
"""


def control(pid, *args):
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def measure(pid, work, url, headers=()):
    """Instructions per request for `url`, counted only while wrk runs."""
    before = set(glob.glob(f"{work}/cg.out*"))
    hdrs = [x for h in headers for x in ("-H", h)]
    # Warm-up, not counted: connections, pools and caches (a first RS256 verify) in place.
    subprocess.run(["wrk", "-t1", "-c10", "-d2s", *hdrs, url], capture_output=True, check=True)
    control(pid, "-i", "on")
    cmd = ["wrk", "-t1", "-c10", f"-d{SECONDS}s", *hdrs]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    control(pid, "-i", "off")
    control(pid, "-d")
    time.sleep(0.5)
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    if "Non-2xx" in out:
        raise SystemExit(f"{url}: non-2xx answers:\n{out}")
    dumps = sorted(set(glob.glob(f"{work}/cg.out*")) - before, key=os.path.getmtime)
    total = 0
    for d in dumps:
        with open(d) as f:
            for line in f:
                if line.startswith("totals:") or line.startswith("summary:"):
                    total = max(total, int(line.split()[1]))
    if os.environ.get("KEEP"):
        print(f"{url}: {' '.join(dumps)}", file=sys.stderr)
    return total / reqs, reqs


def run_edge(binary, work, up):
    port = lb.free_port()
    op, issuer = lb.start_oidc_provider(lb.free_port(), port, work)
    if not op:
        print(f"oidc route left out: {issuer}", file=sys.stderr)
    jwt = lb.mint_rs256(work)
    bench_hash = subprocess.run([binary, "hash-password"], input=b"bench-password\n", check=True,
                                capture_output=True).stdout.decode().strip()
    with open(f"{work}/edge.yaml", "w") as f:
        cfg = CONFIG.format(dir=work, port=port, upstream=up, bench_hash=bench_hash,
                            oidc_route=OIDC_ROUTE if op else "")
        f.write((OIDC.format(issuer=issuer) if op else "") + cfg)
    edge = subprocess.Popen(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                             f"--callgrind-out-file={work}/cg.out.%p", binary, "run", "--config",
                             f"{work}/edge.yaml"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "RUST_LOG": "warn"})
    lb.wait_port(port, timeout=120)
    token = lb.opaque_token(port)
    base = f"http://127.0.0.1:{port}"
    rows = [("public", measure(edge.pid, work, f"{base}/public/x")),
            ("jwt", measure(edge.pid, work, f"{base}/jwt/x", [f"Authorization: Bearer {jwt}"])),
            ("opaque", measure(edge.pid, work, f"{base}/opaque/x", [f"Authorization: Bearer {token}"]))]
    if op:
        session = lb.oidc_login(base, issuer)
        rows.append(("oidc", measure(edge.pid, work, f"{base}/oidc/x", [f"Cookie: {session}"])))
        op.kill()
    edge.kill()  # counts are dumped already; a graceful stop under valgrind takes long
    edge.wait(timeout=60)
    return rows


def run_bare(bare, work, up):
    """The bare Pingora proxy as it is, then with authedge's default timeouts (`--timeouts`)."""
    rows = []
    for name, extra in (("bare Pingora", []), ("bare + timeouts", ["--timeouts"])):
        port = lb.free_port()
        proc = subprocess.Popen(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                                 f"--callgrind-out-file={work}/cg.out.%p", bare, f"127.0.0.1:{port}",
                                 f"127.0.0.1:{up}", *extra], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        lb.wait_port(port, timeout=120)
        rows.append((name, measure(proc.pid, work, f"http://127.0.0.1:{port}/x")))
        proc.kill()
        proc.wait(timeout=60)
    return rows


def main():
    binary = sys.argv[1]
    bare = sys.argv[2] if len(sys.argv) > 2 else None
    work = tempfile.mkdtemp(prefix="authedge-cg-")  # KEEP=1 names each route's dumps
    up = lb.free_port()
    with open(f"{work}/nginx-up.conf", "w") as f:
        f.write(f"""worker_processes 1; daemon off; pid {work}/up.pid; error_log {work}/up.err;
events {{ worker_connections 1024; }}
http {{ access_log off; keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{up}; location / {{ return 200 "ok\\n"; }} }} }}
""")
    nginx = subprocess.Popen(["nginx", "-p", work, "-c", f"{work}/nginx-up.conf"])
    try:
        lb.wait_port(up)
        rows = run_edge(binary, work, up)
        if bare:
            rows += run_bare(bare, work, up)
        public = rows[0][1][0]
        print(f"{'target':<16} {'instructions/request':>22} {'requests':>9} {'vs public':>10}")
        for name, (ir, n) in rows:
            print(f"{name:<16} {ir:>22,.0f} {n:>9} {ir / public:>10.3f}")
    finally:
        nginx.terminate()


if __name__ == "__main__":
    main()
