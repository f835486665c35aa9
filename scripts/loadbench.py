#!/usr/bin/env python3
"""Load benchmark on loopback: one run measures, with wrk, the upstream directly, plain HAProxy
and nginx reverse proxies to it, and authedge's routes (public, and jwt/opaque where configured)
to the same upstream. Prints requests/s, p99 latency, CPU per request (user+system time of the
proxy's processes over the run, divided by requests) and ratios.

Every target gets one worker thread/process so the comparison is per core. Bounded in time:
each measurement runs DURATION seconds (default 5), REPEATS times (default 7). Requests/s, p99
and CPU are medians over the repeats. Ratios are medians of the per-round ratios: every round
measures every target back to back, so a slow spell on a shared machine (seen here: the same
target ranging 14k-24k requests/s between consecutive runs) hits both sides of a ratio.
Only 127.0.0.1 is ever contacted.
"""
import json, os, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, time, urllib.request

DURATION = int(os.environ.get("DURATION", "5"))
REPEATS = int(os.environ.get("REPEATS", "7"))
CONNS = int(os.environ.get("CONNS", "50"))
PAIRS = int(os.environ.get("PAIRS", "15"))
PAIR_SECONDS = int(os.environ.get("PAIR_SECONDS", "2"))
BIN = sys.argv[1]
# Optional: a Pingora proxy with nothing but upstream_peer (examples/bare_proxy.rs), the floor
# authedge is built on.
BARE = sys.argv[2] if len(sys.argv) > 2 else None
HERE = os.path.dirname(os.path.abspath(__file__))
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"port {port} never opened")


def tree(pid):
    out = [pid]
    try:
        kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    except FileNotFoundError:
        kids = []
    for k in kids:
        out += tree(int(k))
    return out


def cpu_seconds(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / TICK


def wrk(url, headers=(), pids=(), seconds=None):
    cmd = ["wrk", "-t1", f"-c{CONNS}", f"-d{seconds or DURATION}s", "--latency"]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(url)
    before = cpu_seconds(pids)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(pids) - before
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99 = float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(non2xx.group(1)) if non2xx else 0
    sock = re.search(r"Socket errors: (.*)", out)
    if errors or sock:
        print(f"  warning: {url}: non-2xx={errors} socket errors={sock.group(1) if sock else 0}", file=sys.stderr)
    return {"rps": rps, "p99_ms": p99, "cpu_us": (cpu / reqs * 1e6) if pids and reqs else None, "errors": errors}


def h2load(url, headers=(), pids=(), seconds=None):
    """h2load over TLS (ALPN h2): one client thread, CONNS connections, 10 streams each."""
    cmd = ["h2load", "-t1", f"-c{CONNS}", "-m10", f"-D{seconds or DURATION}"]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(url)
    before = cpu_seconds(pids)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(pids) - before
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
    m = re.search(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    total, ok, failed, errored = (int(g) for g in m.groups())
    codes = re.search(r"status codes: (\d+) 2xx", out)
    non2xx = ok - int(codes.group(1)) if codes else ok
    if failed or errored or non2xx:
        print(f"  warning: {url}: failed={failed} errored={errored} non-2xx={non2xx}", file=sys.stderr)
    return {"rps": rps, "cpu_us": (cpu / ok * 1e6) if pids and ok else None, "errors": failed + errored + non2xx}


def b64url(b):
    import base64
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def mint_rs256(work):
    """An RS256 token signed with a fresh 2048-bit key (openssl CLI); the edge gets the public key."""
    key, pub = f"{work}/jwt-key.pem", f"{work}/jwt-pub.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-out", pub], check=True, capture_output=True)
    now = int(time.time())
    header = b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    claims = b64url(json.dumps({"iss": "https://issuer.bench", "aud": "bench", "sub": "bench-client",
                                "iat": now, "exp": now + 3600}).encode())
    signing_input = f"{header}.{claims}".encode()
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=signing_input,
                         check=True, capture_output=True).stdout
    return f"{header}.{claims}.{b64url(sig)}"


def opaque_token(port, path="/auth"):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="POST",
                                 data=json.dumps({"username": "bench", "password": "bench-password"}).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)["token"]


def main():
    work = tempfile.mkdtemp(prefix="authedge-bench-")
    procs = []
    try:
        up = free_port()
        with open(f"{work}/nginx-up.conf", "w") as f:
            f.write(f"""worker_processes 1; daemon off; pid {work}/up.pid; error_log {work}/up.err;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{up}; location / {{ return 200 "ok\\n"; }} }} }}
""")
        procs.append(subprocess.Popen(["nginx", "-p", work, "-c", f"{work}/nginx-up.conf"]))
        # One certificate for both TLS frontends (HAProxy wants chain and key in one file).
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", f"{work}/h2.key", "-out", f"{work}/h2.crt"], check=True, capture_output=True)
        with open(f"{work}/h2.pem", "w") as f:
            f.write(open(f"{work}/h2.crt").read() + open(f"{work}/h2.key").read())
        hap, hap_tls = free_port(), free_port()
        with open(f"{work}/haproxy.cfg", "w") as f:
            f.write(f"""global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend f
  bind 127.0.0.1:{hap}
  default_backend b
frontend f_h2
  bind 127.0.0.1:{hap_tls} ssl crt {work}/h2.pem alpn h2,http/1.1
  default_backend b
backend b
  http-reuse always
  server s1 127.0.0.1:{up}
""")
        haproxy = subprocess.Popen(["haproxy", "-f", f"{work}/haproxy.cfg"])
        procs.append(haproxy)
        ngp = free_port()
        with open(f"{work}/nginx-proxy.conf", "w") as f:
            f.write(f"""worker_processes 1; daemon off; pid {work}/px.pid; error_log {work}/px.err;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000;
  upstream u {{ server 127.0.0.1:{up}; keepalive 64; }}
  server {{ listen 127.0.0.1:{ngp}; location / {{ proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection ""; }} }} }}
""")
        nginx_proxy = subprocess.Popen(["nginx", "-p", work, "-c", f"{work}/nginx-proxy.conf"])
        procs.append(nginx_proxy)
        bare = None
        if BARE:
            barep = free_port()
            bare = subprocess.Popen([BARE, f"127.0.0.1:{barep}", f"127.0.0.1:{up}"], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            procs.append(bare)
        edge_port, metrics_port, edge_tls = free_port(), free_port(), free_port()
        with open(os.path.join(HERE, "loadbench.yaml")) as f:
            cfg = f.read()
        cfg = cfg.replace("{port}", str(edge_port)).replace("{metrics_port}", str(metrics_port))
        cfg = cfg.replace("{tls_port}", str(edge_tls))
        cfg = cfg.replace("{upstream}", str(up)).replace("{dir}", work)
        jwt = mint_rs256(work)
        bench_hash = subprocess.run([BIN, "hash-password"], input=b"bench-password\n", check=True,
                                    capture_output=True).stdout.decode().strip()
        cfg = cfg.replace("{bench_hash}", bench_hash)
        with open(f"{work}/authedge.yaml", "w") as f:
            f.write(cfg.replace("{state}", ""))
        edge = subprocess.Popen([BIN, "run", "--config", f"{work}/authedge.yaml"], stdout=subprocess.DEVNULL,
                                env={**os.environ, "RUST_LOG": "warn"})
        procs.append(edge)
        # A second instance, identical but for its state in a local redis-server (revocations
        # mirrored through pub/sub, rate limits one Lua step per request).
        shared = None
        if shutil.which("redis-server"):
            rport = free_port()
            procs.append(subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1",
                                           "--save", "", "--appendonly", "no", "--dir", work],
                                          stdout=subprocess.DEVNULL))
            shared_port, shared_metrics = free_port(), free_port()
            scfg = cfg.replace(f"127.0.0.1:{edge_port}", f"127.0.0.1:{shared_port}")
            scfg = scfg.replace(f"127.0.0.1:{metrics_port}", f"127.0.0.1:{shared_metrics}")
            scfg = scfg.replace(f"127.0.0.1:{edge_tls}", f"127.0.0.1:{free_port()}")
            scfg = scfg.replace(f"{work}/authedge.pid", f"{work}/shared.pid")
            scfg = scfg.replace(f"{work}/authedge-upgrade.sock", f"{work}/shared-upgrade.sock")
            scfg = scfg.replace("{state}", f"state: {{ redis: {{ url: \"redis://127.0.0.1:{rport}/0\", timeout: 50ms }} }}\n")
            with open(f"{work}/shared.yaml", "w") as f:
                f.write(scfg)
            wait_port(rport)
            shared = subprocess.Popen([BIN, "run", "--config", f"{work}/shared.yaml"], stdout=subprocess.DEVNULL,
                                      env={**os.environ, "RUST_LOG": "warn"})
            procs.append(shared)
        for p in (up, hap, hap_tls, ngp, edge_port, edge_tls, metrics_port) + ((barep,) if bare else ()) + \
                ((shared_port, shared_metrics) if shared else ()):
            wait_port(p)
        if shared:
            end = time.time() + 20
            while time.time() < end:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{shared_metrics}/readyz", timeout=1) as r:
                        if r.status == 200:
                            break
                except OSError:
                    time.sleep(0.05)

        scenarios = [
            {"name": "authedge jwt RS256", "path": "/jwt", "headers": [f"Authorization: Bearer {jwt}"]},
            {"name": "authedge opaque", "path": "/opaque", "headers": [f"Authorization: Bearer {opaque_token(edge_port)}"]},
            {"name": "opaque+limit", "path": "/opaque-limited",
             "headers": [f"Authorization: Bearer {opaque_token(edge_port, '/auth-limited')}"]},
        ]
        # (name, memory-state twin) for the shared-state instance's routes.
        shared_targets = []
        if shared:
            shared_targets = [
                ("opaque redis", f"http://127.0.0.1:{shared_port}/opaque",
                 [f"Authorization: Bearer {opaque_token(shared_port)}"], [shared.pid], "authedge opaque"),
                ("opaque+limit redis", f"http://127.0.0.1:{shared_port}/opaque-limited",
                 [f"Authorization: Bearer {opaque_token(shared_port, '/auth-limited')}"], [shared.pid], "opaque+limit"),
            ]
        targets = [
            ("upstream direct", f"http://127.0.0.1:{up}/", [], []),
            ("haproxy proxy", f"http://127.0.0.1:{hap}/public", [], tree(haproxy.pid)),
            ("nginx proxy", f"http://127.0.0.1:{ngp}/public", [], tree(nginx_proxy.pid)),
        ] + ([("pingora bare proxy", f"http://127.0.0.1:{barep}/public", [], [bare.pid])] if bare else []) + [
            ("authedge public", f"http://127.0.0.1:{edge_port}/public", [], [edge.pid]),
        ] + [(s["name"], f"http://127.0.0.1:{edge_port}{s['path']}", s["headers"], [edge.pid]) for s in scenarios] \
          + [t[:4] for t in shared_targets]
        # Round-robin: every repeat measures every target once, so drift on the machine hits all
        # targets alike instead of whichever ran last.
        # The order inside a round is shuffled (seeded, so a run can be repeated): a fixed order
        # let whatever ran just before (a 90k req/s direct run, the edge's own previous route)
        # bias the next target.
        import random
        order = random.Random(int(os.environ.get("SEED", "1")))
        runs = {name: [] for name, *_ in targets}
        for _ in range(REPEATS):
            for name, url, headers, pids in order.sample(targets, len(targets)):
                runs[name].append(wrk(url, headers, pids))
        results = []
        for name, *_ in targets:
            med = dict(sorted(runs[name], key=lambda r: r["rps"])[len(runs[name]) // 2])
            cpus = sorted(r["cpu_us"] for r in runs[name] if r["cpu_us"])
            med["cpu_us"] = cpus[len(cpus) // 2] if cpus else None
            med["p99_ms"] = statistics.median(r["p99_ms"] for r in runs[name])
            med["errors"] = sum(r["errors"] for r in runs[name])
            med["name"] = name
            results.append(med)

        def ratio(name, base):
            return statistics.median(a["rps"] / b["rps"] for a, b in zip(runs[name], runs[base]))

        print(f"\nwrk -t1 -c{CONNS} -d{DURATION}s x {REPEATS} round-robin rounds; one worker per proxy; upstream nginx return 200")
        print("req/s, p99 and CPU: medians over rounds; ratios: medians of per-round ratios")
        print(f"{'target':<22}{'req/s':>10}{'p99 ms':>9}{'CPU us/req':>12}{'vs haproxy':>12}{'vs pingora':>12}{'vs public':>11}")
        for r in results:
            cpu = f"{r['cpu_us']:.1f}" if r["cpu_us"] else "-"
            vh = ratio(r["name"], "haproxy proxy")
            vb = f"{ratio(r['name'], 'pingora bare proxy'):.2f}" if bare else "-"
            vp = ratio(r["name"], "authedge public")
            print(f"{r['name']:<22}{r['rps']:>10.0f}{r['p99_ms']:>9.2f}{cpu:>12}{vh:>12.2f}{vb:>12}{vp:>11.2f}")
        pair_errors = []
        # HTTP/2 over TLS: h2load against HAProxy and the edge's TLS listener (same certificate),
        # round-robin like the wrk rounds.
        h2_targets = [
            ("haproxy h2", f"https://127.0.0.1:{hap_tls}/public", [], tree(haproxy.pid)),
            ("authedge h2 public", f"https://127.0.0.1:{edge_tls}/public", [], [edge.pid]),
            ("authedge h2 jwt", f"https://127.0.0.1:{edge_tls}/jwt", [f"Authorization: Bearer {jwt}"], [edge.pid]),
        ]
        h2_runs = {name: [] for name, *_ in h2_targets}
        if shutil.which("h2load"):
            for _ in range(REPEATS):
                for name, url, headers, pids in order.sample(h2_targets, len(h2_targets)):
                    h2_runs[name].append(h2load(url, headers, pids))
            print(f"\nh2load -t1 -c{CONNS} -m10 -D{DURATION} over TLS (ALPN h2) x {REPEATS} rounds; same certificate")
            print(f"{'target':<22}{'req/s':>10}{'CPU us/req':>12}{'vs haproxy h2':>15}")
            for name, *_ in h2_targets:
                rs = h2_runs[name]
                med = sorted(rs, key=lambda r: r["rps"])[len(rs) // 2]
                cpus = sorted(r["cpu_us"] for r in rs if r["cpu_us"])
                cpu = f"{cpus[len(cpus) // 2]:.1f}" if cpus else "-"
                vh = statistics.median(a["rps"] / b["rps"] for a, b in zip(rs, h2_runs["haproxy h2"]))
                print(f"{name:<22}{med['rps']:>10.0f}{cpu:>12}{vh:>15.2f}")
                if any(r["errors"] for r in rs):
                    pair_errors.append(name)
        # The budgets compare auth routes with the public route of the same edge. Many short back-to-
        # back pairs (alternating which side goes first) measure that ratio with less of the
        # machine's drift than the long rounds above.
        if PAIRS:
            print(f"\npaired runs: {PAIRS} pairs of wrk -t1 -c{CONNS} -d{PAIR_SECONDS}s, public vs each auth route")
            public_url = f"http://127.0.0.1:{edge_port}/public"
            for sc in scenarios:
                url = f"http://127.0.0.1:{edge_port}{sc['path']}"
                ratios = []
                for i in range(PAIRS):
                    sides = [("p", public_url, []), ("a", url, sc["headers"])]
                    if i % 2:
                        sides.reverse()
                    got = {k: wrk(u, h, (), PAIR_SECONDS) for k, u, h in sides}
                    if got["a"]["errors"] or got["p"]["errors"]:
                        pair_errors.append(sc["name"])
                    ratios.append(got["a"]["rps"] / got["p"]["rps"])
                q = statistics.quantiles(ratios, n=4)
                print(f"  {sc['name']:<22} vs public: median {statistics.median(ratios):.3f} "
                      f"(quartiles {q[0]:.3f}-{q[2]:.3f})")
        if shared_targets:
            print("\nshared state (Redis) vs memory state, same routes, medians of per-round ratios (target >= 0.85):")
            for name, _, _, _, twin in shared_targets:
                print(f"  {name:<22} / {twin:<18} {ratio(name, twin):.3f}")
        print("\nreq/s per round:")
        for name, *_ in targets:
            print(f"  {name:<22}" + " ".join(f"{r['rps']:>7.0f}" for r in runs[name]))
        bad = [r["name"] for r in results if r["errors"]] + sorted(set(pair_errors))
        if bad:
            print(f"non-2xx responses in: {', '.join(bad)}")
            return 1
        return 0
    finally:
        for p in procs:
            try:
                # Pingora processes (authedge, the bare proxy) stop at once on SIGINT.
                p.send_signal(signal.SIGINT if p.args[0] in (BIN, BARE) else signal.SIGTERM)
                p.wait(timeout=5)
            except Exception:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
