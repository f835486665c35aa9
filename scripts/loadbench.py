#!/usr/bin/env python3
"""Load benchmark on loopback: one run measures, with wrk, the upstream directly, plain HAProxy
and nginx reverse proxies to it, authedge's routes (public, and jwt/opaque where configured)
to the same upstream, and authedge's `signed` route beside the real jwtproxy verifier
(../shared/peers/bin/jwtproxy, or $JWTPROXY) on that upstream. Signed requests each carry a fresh
token (signed before each round with the demo key conf/signed/svc-a.key, every token sent once:
scripts/loadbench-tokens.lua), so every one costs an RS256 verify and a nonce. Prints requests/s, p99 latency, CPU per request (user+system time of the
proxy's processes over the run, divided by requests) and ratios.

Every target gets one worker thread/process so the comparison is per core. Bounded in time:
each measurement runs DURATION seconds (default 5), REPEATS times (default 7). Requests/s, p99
and CPU are medians over the repeats. Ratios are medians of the per-round ratios: every round
measures every target back to back, so a slow spell on a shared machine (seen here: the same
target ranging 14k-24k requests/s between consecutive runs) hits both sides of a ratio.
Only 127.0.0.1 is ever contacted.
"""
import datetime, html, json, os, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, time, urllib.request

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
ROOT = os.path.dirname(HERE)
# Where each run's JSON and SVG go (one pair per run, named by its UTC start time).
RESULTS = os.environ.get("RESULTS_DIR", os.path.join(ROOT, "bench", "results"))
# The build profile of BIN: PROFILE (set by loadbench.sh), else read from its path.
PROFILE = os.environ.get("PROFILE") or next((p for p in ("dist", "release", "debug") if f"/{p}/" in BIN), "unknown")
# A run whose 1-minute load average is above this at its start is marked busy (its file names end
# in -busy): its figures are not verdicts. (The load at the end is recorded, not judged: the run's
# own wrk and targets raise it.) LABEL adds a word of your own to the names.
BUSY_LOAD = float(os.environ.get("BUSY_LOAD", "0.5"))
LABEL = re.sub(r"[^A-Za-z0-9_.-]", "", os.environ.get("LABEL", ""))
PROXYAUTH_CONNS = int(os.environ.get("PROXYAUTH_CONNS", "4"))
PROXYAUTH_DURATION = int(os.environ.get("PROXYAUTH_DURATION", str(min(DURATION, 3))))
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


def status_kb(pids, key):
    """`key` (VmHWM: peak resident set, VmRSS: now) in kB from /proc/PID/status, summed over pids."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def wrk(url, headers=(), pids=(), seconds=None, tokens=None, proxied=None, conns=None, timeout=None):
    cmd = ["wrk", "-t1", f"-c{conns or CONNS}", f"-d{seconds or DURATION}s", "--latency"]
    if timeout:
        cmd.append(f"--timeout={timeout}s")
    for h in headers:
        cmd += ["-H", h]
    if tokens:
        cmd += ["-s", os.path.join(HERE, "loadbench-tokens.lua")]
    elif proxied:
        cmd += ["-s", os.path.join(HERE, "loadbench-proxy.lua")]
    cmd.append(url)
    if tokens or proxied:
        cmd += ["--", tokens or proxied]
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
    return {"rps": rps, "p99_ms": p99, "cpu_us": (cpu / reqs * 1e6) if pids and reqs else None, "errors": errors,
            "requests": reqs}


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


JWT_ISS, JWT_AUD = "https://issuer.bench", "bench"


def mint_rs256(work):
    """An RS256 token signed with a fresh 2048-bit key (openssl CLI); the edge gets the public key."""
    key, pub = f"{work}/jwt-key.pem", f"{work}/jwt-pub.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-out", pub], check=True, capture_output=True)
    now = int(time.time())
    header = b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    claims = b64url(json.dumps({"iss": JWT_ISS, "aud": JWT_AUD, "sub": "bench-client",
                                "iat": now, "exp": now + 3600}).encode())
    signing_input = f"{header}.{claims}".encode()
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=signing_input,
                         check=True, capture_output=True).stdout
    return f"{header}.{claims}.{b64url(sig)}"


SIGNED_KEY = os.path.join(HERE, "..", "conf", "signed", "svc-a.key")
SIGNED_PUB = os.path.join(HERE, "..", "conf", "signed", "svc-a.pub.pem")
SIGNED_AUD = "http://bench.signed"


def _sign_chunk(count):
    """`count` jwtproxy-style tokens (RS256, kid k1, iss svc-a, a 32-character jti each)."""
    import secrets
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    with open(SIGNED_KEY, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    now = int(time.time())
    header = b64url(json.dumps({"alg": "RS256", "kid": "k1", "typ": "JWT"}).encode())
    out = []
    for _ in range(count):
        claims = b64url(json.dumps({"iss": "svc-a", "aud": SIGNED_AUD, "iat": now, "nbf": now - 60,
                                    "exp": now + 300, "jti": secrets.token_urlsafe(24)}).encode())
        signing_input = f"{header}.{claims}".encode()
        sig = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        out.append(f"{signing_input.decode()}.{b64url(sig)}")
    return out


def signed_tokens(path, n):
    """Write `n` fresh distinct tokens to `path`, one per line (signed on every core)."""
    try:
        import cryptography  # noqa: F401
    except ImportError:
        raise SystemExit("the signed benchmark needs Python's cryptography "
                         "(apt-get install python3-cryptography)")
    import multiprocessing
    workers = os.cpu_count() or 1
    with multiprocessing.Pool(workers) as pool:
        chunks = pool.map(_sign_chunk, [n // workers + 1] * workers)
    with open(path, "w") as f:
        for c in chunks:
            f.write("\n".join(c) + "\n")


def opaque_token(port, path="/auth"):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="POST",
                                 data=json.dumps({"username": "bench", "password": "bench-password"}).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)["token"]


# Peers built from crates.io once, into their own cache (never the project's target directory).
PEERS_DIR = os.environ.get("PEERS_DIR", os.path.expanduser("~/.cache/authedge/peers"))
PEER_BUILD_TIMEOUT = int(os.environ.get("PEER_BUILD_TIMEOUT", "2700"))


def cargo(args, root, cwd=None):
    """`nice -n 10 cargo ARGS` with one build job (the machine is shared), building under
    root/target; (ok, the tail of its output)."""
    env = {**os.environ, "CARGO_BUILD_JOBS": "1", "CARGO_TARGET_DIR": os.path.join(root, "target")}
    try:
        r = subprocess.run(["nice", "-n", "10", "cargo", *args], cwd=cwd, env=env, capture_output=True, text=True,
                           timeout=PEER_BUILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        return False, f"cargo {' '.join(args)}: gave up after {PEER_BUILD_TIMEOUT} s (PEER_BUILD_TIMEOUT)"
    except OSError as e:
        return False, f"cargo {' '.join(args)}: {e}"
    tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-40:])
    return r.returncode == 0, f"cargo {' '.join(args)} (exit {r.returncode}):\n{tail}"


def first_error(log):
    """The first `error...` line of a cargo log (the last line when there is none)."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    return next((line for line in lines if line.startswith("error")), lines[-1] if lines else "no output")


def installed_version(root, crate):
    try:
        with open(os.path.join(root, ".crates.toml")) as f:
            m = re.search(rf'"{crate} ([^ ]+) ', f.read())
        return m.group(1) if m else None
    except OSError:
        return None


def peer_binary(crate, version, fallback=None, locked=True):
    """The peer's binary under PEERS_DIR/<crate>/bin, built once with `cargo install` (reused
    while it exists). On failure (after `fallback(root)`, if given, also failed) the error goes to
    PEERS_DIR/<crate>/build-failed.txt and later runs skip the build until that file is deleted.
    Returns (path or None, a note for the run's record); prints what happened once."""
    root = os.path.join(PEERS_DIR, crate)
    binary, failed = os.path.join(root, "bin", crate), os.path.join(root, "build-failed.txt")
    if os.path.exists(binary):
        note = {"status": "reused", "binary": binary, "version": installed_version(root, crate) or version}
        if os.path.exists(os.path.join(root, "built-by-fallback.txt")):
            with open(os.path.join(root, "built-by-fallback.txt")) as f:
                note["install_error"] = f.readline().strip()
            note["status"] = "reused (built by the fallback)"
        return binary, note
    if os.path.exists(failed):
        with open(failed) as f:
            first = f.readline().strip()
        print(f"  {crate}: left out: its build failed before ({first}; see {failed}, delete it to try again)",
              file=sys.stderr)
        return None, {"status": "build failed", "why": first, "log": failed}
    if os.environ.get("BUILD_PEERS", "1") == "0":
        print(f"  {crate}: left out: not built yet and BUILD_PEERS=0", file=sys.stderr)
        return None, {"status": "not built (BUILD_PEERS=0)"}
    os.makedirs(root, exist_ok=True)
    spec = f"{crate}@{version}" if version else crate
    lock = ["--locked"] if locked else []
    print(f"  {crate}: building it once: cargo install {' '.join(lock + [spec])} --root {root} (nice, one job; "
          f"this takes minutes)", file=sys.stderr)
    t0 = time.time()
    ok, log = cargo(["install", *lock, spec, "--root", root], root)
    how = " ".join(["cargo install"] + lock)
    install_error = None
    if not ok and fallback:
        install_error = first_error(log)
        print(f"  {crate}: cargo install failed ({install_error}); trying the fallback build", file=sys.stderr)
        ok, log2 = fallback(root)
        log += "\n\n" + log2
        how = "fallback"
    shutil.rmtree(os.path.join(root, "target"), ignore_errors=True)
    if ok and os.path.exists(binary):
        print(f"  {crate}: built in {time.time() - t0:.0f} s ({how})", file=sys.stderr)
        note = {"status": f"built ({how})", "binary": binary, "version": installed_version(root, crate) or version}
        if install_error:
            note["install_error"] = install_error
            with open(os.path.join(root, "built-by-fallback.txt"), "w") as f:
                f.write(f"{install_error}\n\n{log}\n")
        return binary, note
    last = first_error(log)
    with open(failed, "w") as f:
        f.write(f"{last.strip()}\n\n{log}\n")
    print(f"  {crate}: left out: it does not build ({last.strip()}; whole log in {failed})", file=sys.stderr)
    return None, {"status": "build failed", "why": last.strip(), "log": failed}


def ooproxy_fallback(root):
    """ooproxy 1.0.3 pins ring 0.13.5, whose build script no longer builds with today's `cc`: its
    crates.io source (unpacked by the failed install) built with `cc` held at 1.0.79."""
    import glob
    srcs = sorted(glob.glob(os.path.expanduser("~/.cargo/registry/src/*/ooproxy-1.0.3")))
    if not srcs:
        return False, "fallback: no ooproxy-1.0.3 source under ~/.cargo/registry/src"
    src = os.path.join(root, "ooproxy-1.0.3")
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(srcs[0], src)
    logs = []
    for args in (["generate-lockfile"], ["update", "-p", "cc", "--precise", "1.0.79"], ["build", "--release"]):
        ok, log = cargo(args, root, cwd=src)
        logs.append(log)
        if not ok:
            return False, "fallback:\n" + "\n".join(logs)
    os.makedirs(os.path.join(root, "bin"), exist_ok=True)
    shutil.copy2(os.path.join(root, "target", "release", "ooproxy"), os.path.join(root, "bin", "ooproxy"))
    return True, "fallback (cc 1.0.79):\n" + "\n".join(logs)


def git_head():
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def write_results(record):
    """bench/results/<UTC start>[-busy][-LABEL].json and the .svg chart beside it."""
    os.makedirs(RESULTS, exist_ok=True)
    stem = record["started_utc"].replace("-", "").replace(":", "")
    stem += ("-busy" if record["busy"] else "") + (f"-{record['label']}" if record["label"] else "")
    json_path, svg_path = os.path.join(RESULTS, stem + ".json"), os.path.join(RESULTS, stem + ".svg")
    with open(json_path, "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    with open(svg_path, "w") as f:
        f.write(svg_chart(record))
    return json_path, svg_path


def svg_chart(record):
    """A self-contained SVG: two panels of horizontal bars, requests/s and CPU us per request per
    target (authedge's rows in one colour, the peers' in another)."""
    rows = record["targets"]
    label_w, bar_w, row_h, top = 190, 300, 20, 56
    panel_w = label_w + bar_w + 70
    height = top + row_h * len(rows) + 40
    width = 2 * panel_w + 20
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>']
    title = (f"authedge load benchmark {record['started_utc']} - {record['profile']} build, "
             f"{record['cores']} cores, load {record['load_average_start'][0]:.2f}"
             + (" (BUSY: not a verdict)" if record["busy"] else "")
             + f", wrk -c{record['params']['conns']} {record['params']['duration_s']}s x {record['params']['repeats']}")
    out.append(f'<text x="10" y="18" font-size="13" font-weight="bold">{html.escape(title)}</text>')
    for i, (key, head, fmt) in enumerate((("rps", "requests/s (median of rounds)", "{:,.0f}"),
                                         ("cpu_us", "CPU us per request (lower is better)", "{:.1f}"))):
        x0 = 10 + i * (panel_w + 10)
        out.append(f'<text x="{x0}" y="{top - 12}" font-weight="bold">{head}</text>')
        vals = sorted(r[key] for r in rows if r.get(key))
        # One far-off value (ProxyAuth's CPU per request) would flatten every other bar: the scale
        # stops at 4x the median, and a longer bar is cut with a white break, its value printed.
        top_v = min(vals[-1], 4 * vals[len(vals) // 2]) if vals else 1
        for j, r in enumerate(rows):
            y = top + j * row_h
            out.append(f'<text x="{x0 + label_w - 6}" y="{y + 14}" text-anchor="end">{html.escape(r["name"])}</text>')
            v = r.get(key)
            if not v:
                out.append(f'<text x="{x0 + label_w + 4}" y="{y + 14}" fill="#888">-</text>')
                continue
            w = max(1, round(bar_w * min(v, top_v) / top_v))
            colour = "#1f6fb4" if r["name"].startswith(("authedge", "opaque")) else "#b0b0b0"
            out.append(f'<rect x="{x0 + label_w}" y="{y + 3}" width="{w}" height="{row_h - 6}" fill="{colour}"/>')
            if v > top_v:
                out.append(f'<rect x="{x0 + label_w + w - 24}" y="{y + 1}" width="5" height="{row_h - 2}" fill="white" '
                           f'transform="skewX(-20)" transform-origin="{x0 + label_w + w - 22} {y + 10}"/>')
            out.append(f'<text x="{x0 + label_w + w + 4}" y="{y + 14}">{fmt.format(v)}</text>')
    out.append(f'<text x="10" y="{height - 12}" fill="#555">commit {html.escape(str(record["commit"])[:12])}; '
               f'blue: authedge, grey: peers and references; one worker each, 127.0.0.1 only</text>')
    out.append("</svg>\n")
    return "\n".join(out)


# (authedge route, peer, budget: the route's requests/s over the peer's at least this, or None:
# reported only, note). Issue 16's budgets, and the earlier ones (jwt and opaque against the public
# route, the Redis-shared state against memory state).
RATIOS = [
    ("authedge public", "pingora bare proxy", 0.97, "authedge's floor"),
    # The bare proxy with the timeouts authedge sets by default (bare_proxy --timeouts): Pingora
    # registers a timer for each bounded wait, the plain bare proxy waits without limit.
    ("authedge public", "pingora bare + timeouts", 0.97, "the same timeouts on both sides"),
    ("authedge jwt RS256", "haproxy jwt_verify", 1.5, "static PEM, HAProxy's best case"),
    ("authedge jwt RS256", "ooproxy", None, "static JWKS"),
    ("authedge opaque", "proxyauth", 2.0,
     f"ProxyAuth at {PROXYAUTH_CONNS} connections (PROXYAUTH_CONNS) for {PROXYAUTH_DURATION} s a round"),
    ("authedge signed", "jwtproxy verifier", 3.0, "a fresh token per request"),
    ("authedge signer", "jwtproxy signer", 3.0, None),
    ("authedge jwt RS256", "authedge public", 0.90, None),
    ("authedge opaque", "authedge public", 0.95, None),
    ("authedge oidc", "authedge public", None, "a live session cookie"),
    # The same request bytes on both sides: the public route sent the oidc route's session cookie
    # (which the public route passes on untouched). Carrying a 1.3 KB cookie costs the edge, the
    # client and the upstream on this 2-core machine about as much as the whole oidc filter would
    # be allowed; this ratio is the filter's own cost.
    ("authedge oidc", "authedge public + cookie", 0.95, "the same Cookie header on both sides"),
    ("opaque redis", "authedge opaque", 0.85, "Redis-shared state vs memory"),
    ("opaque+limit redis", "opaque+limit", 0.85, "Redis-shared state vs memory"),
]


def http_get(url, headers=(), method="GET", body=None):
    """(status, headers, body) of one request, redirects not followed; status is a string on a
    connection error."""
    import http.client
    from urllib.parse import urlsplit
    u = urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        c.request(method, (u.path or "/") + (f"?{u.query}" if u.query else ""), body=body,
                  headers=dict(h.split(": ", 1) for h in headers))
        r = c.getresponse()
        return r.status, r.headers, r.read()
    except OSError as e:
        return f"connection error ({e})", {}, b""
    finally:
        c.close()


def tamper(token):
    """The token with one character changed in the middle of its last part (a JWT's signature,
    an opaque token's sealed body), never in a base64 tail whose bits may be padding."""
    dot = token.rfind(".") + 1
    i = dot + (len(token) - dot) // 2
    return token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1:]


OIDC_DIR = os.path.join(ROOT, "tests", "fixtures", "oidc-provider")


def start_oidc_provider(port, edge_port, work):
    """The provider fixture (tests/fixtures/oidc-provider: the oidc-provider npm package, as the
    oidc tests run it) on `port`, with the confidential client `web` for the edge's callback;
    `npm ci` first when its node_modules is missing. (process, issuer) or (None, why not)."""
    if not (shutil.which("node") and shutil.which("npm")):
        return None, "no node/npm (Debian: nodejs npm)"
    if not os.path.exists(os.path.join(OIDC_DIR, "node_modules", "oidc-provider", "package.json")):
        r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=OIDC_DIR, capture_output=True, text=True)
        if r.returncode:
            return None, f"npm ci in {OIDC_DIR} failed: {(r.stdout + r.stderr).strip()[-300:]}"
    clients = [{"client_id": "web", "client_secret": "secret-web",
                "redirect_uris": [f"http://127.0.0.1:{edge_port}/oauth2/callback"],
                "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"]}]
    proc = subprocess.Popen(["node", "server.js", str(port)], cwd=OIDC_DIR, stdout=subprocess.PIPE,
                            stderr=open(f"{work}/oidc-provider.log", "w"), text=True,
                            env={**os.environ, "OIDC_CLIENTS": json.dumps(clients)})
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        proc.kill()
        return None, f"the provider fixture did not start ({line.strip()!r}; see its log)"
    # Keep draining its stdout so it never blocks on a full pipe.
    import threading
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc, line.split(" ", 2)[2].strip()


def set_cookies(headers):
    out = []
    for v in headers.get_all("Set-Cookie") or []:
        pair = v.split(";", 1)[0]
        if "=" in pair:
            n, val = pair.split("=", 1)
            out.append((n.strip(), val.strip()))
    return out


def oidc_login(edge, issuer, login="bench"):
    """A whole login over plain HTTP, as tests/oidc/login.rs walks it: the edge's
    /oauth2/start, the provider's login and consent forms, the edge's callback. Returns the
    session's `Cookie` header value."""
    from urllib.parse import urlencode, urljoin
    st, h, _ = http_get(f"{edge}/oauth2/start?rd=%2Foidc", ["Accept: text/html"])
    if st != 302:
        raise RuntimeError(f"/oauth2/start answered {st}")
    flow = "; ".join(f"{n}={v}" for n, v in set_cookies(h) if n.endswith("_flow"))
    url, jar = h["Location"], {}

    def call(url, form=None):
        hdrs = [f"Cookie: {'; '.join(f'{k}={v}' for k, v in jar.items())}"] if jar else []
        if form is not None:
            hdrs.append("Content-Type: application/x-www-form-urlencoded")
        st, h, body = http_get(url, hdrs, "POST" if form is not None else "GET",
                               urlencode(form) if form is not None else None)
        for n, v in set_cookies(h) if h else []:
            if v:
                jar[n] = v
            else:
                jar.pop(n, None)
        return st, h, body.decode(errors="replace")

    for _ in range(12):
        if url.startswith(edge):
            break
        st, h, body = call(url)
        if isinstance(st, int) and 300 <= st < 400:
            url = urljoin(issuer + "/", h["Location"])
            continue
        if st != 200 or "<form" not in body:
            raise RuntimeError(f"provider page {url} answered {st}")
        form = body[body.index("<form"):]
        action = urljoin(issuer + "/", form[form.index('action="') + 8:].split('"', 1)[0].replace("&amp;", "&"))
        fields = ({"prompt": "login", "login": login, "password": "x"} if 'name="login"' in body
                  else {"prompt": "consent"})
        st, h, _ = call(action, fields)
        if not (isinstance(st, int) and 300 <= st < 400):
            raise RuntimeError(f"provider form {action} answered {st}")
        url = urljoin(issuer + "/", h["Location"])
    else:
        raise RuntimeError("the provider never redirected back to the edge")
    st, h, _ = http_get(url, [f"Cookie: {flow}"])
    if st != 302:
        raise RuntimeError(f"the edge's callback answered {st}")
    session = "; ".join(f"{n}={v}" for n, v in set_cookies(h) if not n.endswith("_flow") and v)
    if not session:
        raise RuntimeError("the callback set no session cookie")
    return session


def serve_jwks(pub_pem, issuer):
    """A static OpenID discovery document and JWKS (the RS256 public key, `alg` set, no `kid`) on
    a free 127.0.0.1 port, from a thread of this process; returns that port."""
    import http.server, threading
    from cryptography.hazmat.primitives import serialization
    with open(pub_pem, "rb") as f:
        nums = serialization.load_pem_public_key(f.read()).public_numbers()

    def b64int(i):
        return b64url(i.to_bytes((i.bit_length() + 7) // 8, "big"))
    port = free_port()
    docs = {"/.well-known/openid-configuration": {"issuer": issuer, "jwks_uri": f"http://127.0.0.1:{port}/jwks"},
            "/jwks": {"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "n": b64int(nums.n), "e": b64int(nums.e)}]}}

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(docs.get(self.path.split("?")[0], {})).encode()
            self.send_response(200 if self.path.split("?")[0] in docs else 404)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return port


def sanity(url, good, bad, refusals=(401, 403)):
    """None when a real credential gets 200 and a tampered one 401/403 (or `refusals`) through
    this target, else why not. `good`/`bad`: header lists."""
    st, _, body = http_get(url, good)
    if st != 200:
        return f"a real credential got {st} ({body[:80]!r}), not 200"
    st, _, body = http_get(url, bad)
    if st not in refusals:
        return f"a tampered credential got {st} ({body[:80]!r}), not {'/'.join(map(str, refusals))}"
    return None


# The one known exception to "a tampered credential gets 401/403": ProxyAuth 0.5.0's rate limiter
# keys requests by the token's user before its own check runs, and a token that does not decrypt
# makes that key extractor fail with actix-governor's default status, 500 ("invalid token"). It
# still refuses the request; the run prints this each time.
SANITY_REFUSALS = {"proxyauth": (401, 403, 500)}


def main():
    load_start = os.getloadavg()
    t_start = time.time()
    started = datetime.datetime.now(datetime.timezone.utc)
    peer_notes = {}
    proxyauth_bin, peer_notes["proxyauth"] = peer_binary("proxyauth", None)
    ooproxy_bin, peer_notes["ooproxy"] = peer_binary("ooproxy", "1.0.3", fallback=ooproxy_fallback, locked=False)
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
            baretp = free_port()
            bare_t = subprocess.Popen([BARE, f"127.0.0.1:{baretp}", f"127.0.0.1:{up}", "--timeouts"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(bare_t)
        edge_port, metrics_port, edge_tls = free_port(), free_port(), free_port()
        with open(os.path.join(HERE, "loadbench.yaml")) as f:
            cfg = f.read()
        cfg = cfg.replace("{port}", str(edge_port)).replace("{metrics_port}", str(metrics_port))
        cfg = cfg.replace("{tls_port}", str(edge_tls))
        cfg = cfg.replace("{upstream}", str(up)).replace("{dir}", work)
        cfg = cfg.replace("{signed_pub}", os.path.abspath(SIGNED_PUB))
        jwt = mint_rs256(work)
        # HAProxy's own JWT check (jwt_verify, 2.5+), its own process with one thread: RS256
        # against the same static public key as authedge's jwt route, alg, iss, aud and exp
        # checked (exp against date()), Authorization removed before the upstream. HAProxy has
        # no JWKS, so a static PEM is its best case. Every refusal is a 401.
        hap_jwt = free_port()
        with open(f"{work}/haproxy-jwt.cfg", "w") as f:
            f.write(f"""global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend f_jwt
  bind 127.0.0.1:{hap_jwt}
  http-request deny deny_status 401 unless {{ http_auth_bearer -m found }}
  http-request set-var(txn.alg) http_auth_bearer,jwt_header_query('$.alg')
  http-request set-var(txn.iss) http_auth_bearer,jwt_payload_query('$.iss')
  http-request set-var(txn.aud) http_auth_bearer,jwt_payload_query('$.aud')
  http-request set-var(txn.exp) http_auth_bearer,jwt_payload_query('$.exp','int')
  http-request set-var(txn.now) date()
  http-request deny deny_status 401 unless {{ var(txn.alg) -m str RS256 }}
  http-request deny deny_status 401 unless {{ var(txn.iss) -m str {JWT_ISS} }}
  http-request deny deny_status 401 unless {{ var(txn.aud) -m str {JWT_AUD} }}
  http-request deny deny_status 401 unless {{ var(txn.exp),sub(txn.now) -m int gt 0 }}
  http-request deny deny_status 401 unless {{ http_auth_bearer,jwt_verify(txn.alg,"{work}/jwt-pub.pem") -m int 1 }}
  http-request del-header Authorization
  default_backend b
backend b
  http-reuse always
  server s1 127.0.0.1:{up}
""")
        haproxy_jwt = subprocess.Popen(["haproxy", "-f", f"{work}/haproxy-jwt.cfg"])
        procs.append(haproxy_jwt)
        bench_hash = subprocess.run([BIN, "hash-password"], input=b"bench-password\n", check=True,
                                    capture_output=True).stdout.decode().strip()
        cfg = cfg.replace("{bench_hash}", bench_hash)
        # The oidc route: the provider fixture on its own port, the edge's callback registered.
        oidc_proc, op_port = None, free_port()
        oidc_proc, issuer_or_why = start_oidc_provider(op_port, edge_port, work)
        oidc_block = oidc_route = ""
        if oidc_proc:
            procs.append(oidc_proc)
            oidc_block = f"""oidc:
  bench:
    issuer: "{issuer_or_why}"
    client_id: web
    client_secret: {{ value: secret-web }}
    scopes: [openid, email, profile]
    cookie_secrets: [ {{ id: k1, secret: {{ value: "loadbench-cookie-secret-0123456789abcdef" }} }} ]
    cookie_secure: false
    email_domains: [example.com]
"""
            oidc_route = """  - id: oidc
    path: /oidc
    upstream: fast
    auth: [ { type: oidc, provider: bench } ]
"""
            peer_notes["oidc-provider"] = {"status": "started", "issuer": issuer_or_why}
        else:
            peer_notes["oidc-provider"] = {"status": "not started", "why": issuer_or_why}
            print(f"  authedge oidc: left out: {issuer_or_why}", file=sys.stderr)
        with open(f"{work}/authedge.yaml", "w") as f:
            f.write(cfg.replace("{state}", "").replace("{oidc}", oidc_block).replace("{oidc_route}", oidc_route))
        edge = subprocess.Popen([BIN, "run", "--config", f"{work}/authedge.yaml"], stdout=subprocess.DEVNULL,
                                env={**os.environ, "RUST_LOG": "warn"})
        procs.append(edge)
        # The real jwtproxy verifier (one Go thread, as every target here gets one core) in front of
        # the same upstream, with the same key and audience as authedge's signed route.
        jwtproxy_bin = os.environ.get("JWTPROXY", os.path.join(HERE, "..", "..", "shared", "peers", "bin", "jwtproxy"))
        jwtproxy = None
        if os.path.exists(jwtproxy_bin):
            jport = free_port()
            with open(f"{work}/jwtproxy.yaml", "w") as f:
                f.write(f"""jwtproxy:
  signer_proxy: {{ enabled: false }}
  verifier_proxies:
  - listen_addr: 127.0.0.1:{jport}
    verifier:
      upstream: http://127.0.0.1:{up}/
      audience: {SIGNED_AUD}
      max_skew: 1m
      max_ttl: 5m
      key_server: {{ type: preshared, options: {{ issuer: svc-a, key_id: k1, public_key_path: {os.path.abspath(SIGNED_PUB)} }} }}
""")
            jwtproxy = subprocess.Popen([jwtproxy_bin, "-config", f"{work}/jwtproxy.yaml", "-log-level", "error"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        env={**os.environ, "GOMAXPROCS": "1"})
            procs.append(jwtproxy)
            # The signers: jwtproxy's and authedge's (role: signer), same key, same upstream.
            jsport, asport = free_port(), free_port()
            with open(f"{work}/jwtproxy-signer.yaml", "w") as f:
                f.write(f"""jwtproxy:
  signer_proxy:
    listen_addr: 127.0.0.1:{jsport}
    signer:
      issuer: svc-a
      private_key: {{ type: preshared, options: {{ key_id: k1, private_key_path: {os.path.abspath(SIGNED_KEY)} }} }}
""")
            jwtproxy_signer = subprocess.Popen([jwtproxy_bin, "-config", f"{work}/jwtproxy-signer.yaml", "-log-level", "error"],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                               env={**os.environ, "GOMAXPROCS": "1"})
            procs.append(jwtproxy_signer)
            with open(f"{work}/signer.yaml", "w") as f:
                f.write(f"""server: {{ threads: 1, pid_file: "{work}/signer.pid", upgrade_sock: "{work}/signer.sock" }}
listeners: [ {{ address: "127.0.0.1:{asport}", role: signer }} ]
log: {{ access: false, level: warn }}
upstreams: {{}}
routes: []
signer:
  issuer: svc-a
  private_key: {{ preshared: {{ key_id: k1, private_key_file: "{os.path.abspath(SIGNED_KEY)}" }} }}
""")
            edge_signer = subprocess.Popen([BIN, "run", "--config", f"{work}/signer.yaml"], stdout=subprocess.DEVNULL,
                                           env={**os.environ, "RUST_LOG": "warn"})
            procs.append(edge_signer)
        else:
            print(f"  note: no jwtproxy at {jwtproxy_bin}: the signed comparison is left out", file=sys.stderr)
        # ProxyAuth (seed 001): its config/config.json and config/routes.yml (read from its working
        # directory) written here: one worker, the bench user with a plaintext password (ProxyAuth
        # hashes it with Argon2 at start and rewrites the file), rate limits far above what it
        # reaches, one secure route to the same upstream. `cert: {}`: without it ProxyAuth reads a
        # client certificate from "" on every request and answers 500.
        proxyauth = None
        if proxyauth_bin:
            pa_port = free_port()
            pa_dir = f"{work}/proxyauth"
            os.makedirs(f"{pa_dir}/config")
            with open(f"{pa_dir}/config/config.json", "w") as f:
                json.dump({"token_expiry_seconds": 3600, "secret": "loadbench-proxyauth-secret-0123456789",
                           "host": "127.0.0.1", "port": pa_port, "worker": 1,
                           # block_delay is its refill period in ms (1: 1,000 a second per user) on a
                           # burst of 10^9; auth must not be 0 (0 drops /auth's limiter, untested).
                           "ratelimit": {"requests_per_second": 1000000, "burst": 1000000000, "block_delay": 1,
                                         "auth": 1000, "block_delay_auth": 1},
                           "users": [{"username": "bench", "password": "bench-password"}]}, f, indent=1)
            with open(f"{pa_dir}/config/routes.yml", "w") as f:
                f.write(f"""routes:
  - prefix: "/opaque"
    target: "http://127.0.0.1:{up}"
    username: ["bench"]
    secure: true
    cert: {{}}
""")
            proxyauth = subprocess.Popen([proxyauth_bin], cwd=pa_dir, stdout=subprocess.DEVNULL,
                                         stderr=open(f"{work}/proxyauth.log", "w"), env={**os.environ, "RUST_LOG": "error"})
            procs.append(proxyauth)
        # ooproxy (seed 000): its environment, as its README gives it, against a static JWKS served
        # here (its discovery's issuer is the token's), audience checked, one worker.
        ooproxy = None
        if ooproxy_bin:
            oo_port = free_port()
            jwks_port = serve_jwks(f"{work}/jwt-pub.pem", JWT_ISS)
            os.makedirs(f"{work}/ooproxy")
            ooproxy = subprocess.Popen([ooproxy_bin], cwd=f"{work}/ooproxy", stdout=subprocess.DEVNULL,
                                       stderr=open(f"{work}/ooproxy.log", "w"),
                                       env={**os.environ, "LISTEN_URL": f"127.0.0.1:{oo_port}",
                                            "PROVIDER_URL": f"http://127.0.0.1:{jwks_port}",
                                            "UPSTREAM_URL": f"http://127.0.0.1:{up}", "AUDIENCE": json.dumps(JWT_AUD),
                                            "NUM_WORKERS": "1", "RUST_LOG": "error"})
            procs.append(ooproxy)
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
            scfg = scfg.replace("{oidc}", "").replace("{oidc_route}", "")
            with open(f"{work}/shared.yaml", "w") as f:
                f.write(scfg)
            wait_port(rport)
            shared = subprocess.Popen([BIN, "run", "--config", f"{work}/shared.yaml"], stdout=subprocess.DEVNULL,
                                      env={**os.environ, "RUST_LOG": "warn"})
            procs.append(shared)
        for p in (up, hap, hap_tls, hap_jwt, ngp, edge_port, edge_tls, metrics_port) + ((barep, baretp) if bare else ()) + \
                ((shared_port, shared_metrics) if shared else ()) + ((jport, jsport, asport) if jwtproxy else ()):
            wait_port(p)
        if ooproxy:
            try:
                wait_port(oo_port)
            except SystemExit:
                with open(f"{work}/ooproxy.log") as f:
                    why = f"never listened: {f.read()[-300:]!r}"
                peer_notes["ooproxy"]["run"] = why
                print(f"  ooproxy: left out: {why}", file=sys.stderr)
                ooproxy = None
        if proxyauth:
            try:
                wait_port(pa_port)
            except SystemExit:
                with open(f"{work}/proxyauth.log") as f:
                    why = f"never listened: {f.read()[-300:]!r}"
                peer_notes["proxyauth"]["run"] = why
                print(f"  proxyauth: left out: {why}", file=sys.stderr)
                proxyauth = None
        if shared:
            end = time.time() + 20
            while time.time() < end:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{shared_metrics}/readyz", timeout=1) as r:
                        if r.status == 200:
                            break
                except OSError:
                    time.sleep(0.05)

        if oidc_proc:
            end = time.time() + 20
            while time.time() < end and http_get(f"http://127.0.0.1:{metrics_port}/readyz")[0] != 200:
                time.sleep(0.1)
        # authedge's resident set after start, before any request.
        idle_rss_kb = status_kb([edge.pid], "VmRSS")
        print(f"  authedge idle RSS after start: {idle_rss_kb / 1024:.1f} MB", file=sys.stderr)
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
            ("haproxy jwt_verify", f"http://127.0.0.1:{hap_jwt}/jwt", [f"Authorization: Bearer {jwt}"],
             tree(haproxy_jwt.pid)),
        ] + ([("pingora bare proxy", f"http://127.0.0.1:{barep}/public", [], [bare.pid]),
              ("pingora bare + timeouts", f"http://127.0.0.1:{baretp}/public", [], [bare_t.pid])]
             if bare else []) + [
            ("authedge public", f"http://127.0.0.1:{edge_port}/public", [], [edge.pid]),
        ] + [(s["name"], f"http://127.0.0.1:{edge_port}{s['path']}", s["headers"], [edge.pid]) for s in scenarios] \
          + [t[:4] for t in shared_targets]
        if ooproxy:
            targets.append(("ooproxy", f"http://127.0.0.1:{oo_port}/jwt", [f"Authorization: Bearer {jwt}"],
                            tree(ooproxy.pid)))
        oidc_check = None
        if oidc_proc:
            try:
                session = oidc_login(f"http://127.0.0.1:{edge_port}", issuer_or_why)
                targets.append(("authedge oidc", f"http://127.0.0.1:{edge_port}/oidc", [f"Cookie: {session}"], [edge.pid]))
                targets.append(("authedge public + cookie", f"http://127.0.0.1:{edge_port}/public",
                                [f"Cookie: {session}"], [edge.pid]))
                scenarios.append({"name": "authedge oidc", "path": "/oidc", "headers": [f"Cookie: {session}"],
                                  "public_headers": [f"Cookie: {session}"]})
                oidc_check = ([f"Cookie: {session}"],
                              ["Cookie: " + "; ".join(f"{n}={tamper(v)}" for n, v in
                                                      (c.split("=", 1) for c in session.split("; ")))])
            except (RuntimeError, KeyError, ValueError) as e:
                peer_notes["oidc-provider"]["login"] = f"failed: {e}"
                print(f"  authedge oidc: left out: the login failed ({e})", file=sys.stderr)
        # ProxyAuth answers a few requests a second (it builds an HTTP client per request): few
        # connections and a short bounded run keep the rounds bounded.
        slow = {}
        if proxyauth:
            try:
                pa_token = opaque_token(pa_port)
                targets.append(("proxyauth", f"http://127.0.0.1:{pa_port}/opaque", [f"Authorization: Bearer {pa_token}"],
                                tree(proxyauth.pid)))
                slow["proxyauth"] = {"conns": PROXYAUTH_CONNS, "seconds": PROXYAUTH_DURATION, "timeout": 10}
            except (OSError, ValueError, KeyError) as e:
                peer_notes["proxyauth"]["run"] = f"no token from its /auth: {e}"
                print(f"  proxyauth: left out: no token from its /auth ({e})", file=sys.stderr)
        # Targets whose every request needs a fresh token: the same tokens go to both (each has
        # its own nonce store), fresh ones every round.
        signed = set()
        if jwtproxy:
            targets += [("authedge signed", f"http://127.0.0.1:{edge_port}/signed", [], [edge.pid]),
                        ("jwtproxy verifier", f"http://127.0.0.1:{jport}/signed", [], tree(jwtproxy.pid))]
            signed = {"authedge signed", "jwtproxy verifier"}
            targets += [("authedge signer", f"http://127.0.0.1:{asport}/", [], [edge_signer.pid]),
                        ("jwtproxy signer", f"http://127.0.0.1:{jsport}/", [], tree(jwtproxy_signer.pid))]
        # Before timing: through every auth target, a real credential gets 200 and a tampered one
        # 401/403. A target failing that is reported and left out, never timed as if it worked.
        def bearer(h):
            return [f"Authorization: Bearer {tamper(x.split('Bearer ', 1)[1])}" if x.startswith("Authorization: Bearer ")
                    else x for x in h]
        checks = {name: (headers, bearer(headers)) for name, _, headers, _ in targets
                  if any(h.startswith("Authorization: Bearer ") for h in headers)}
        if oidc_check:
            checks["authedge oidc"] = oidc_check
        for name in signed:
            good, bad = _sign_chunk(2)
            checks[name] = ([f"Authorization: Bearer {good}"], [f"Authorization: Bearer {tamper(bad)}"])
        excluded = {}
        for name, url, *_ in targets:
            if name in checks:
                why = sanity(url, *checks[name], refusals=SANITY_REFUSALS.get(name, (401, 403)))
                if not why and name in SANITY_REFUSALS:
                    st = http_get(url, checks[name][1])[0]
                    if st not in (401, 403):
                        note = f"refuses a tampered credential with {st}, not 401/403 (a known {name} trait)"
                        peer_notes.setdefault(name, {})["sanity"] = note
                        print(f"  note: {name} {note}", file=sys.stderr)
                if why:
                    excluded[name] = why
                    print(f"  LEFT OUT {name}: {why}", file=sys.stderr)
        targets = [t for t in targets if t[0] not in excluded]
        signed -= set(excluded)
        print(f"  sanity: {len(checks) - len(excluded)} of {len(checks)} auth targets give 200 for a real credential "
              f"and a refusal (401/403, see notes) for a tampered one", file=sys.stderr)
        # Peak RSS per target: VmHWM over the process tree of the target's first process (the
        # upstream nginx for the direct row), read at the end of the run.
        rss_root = {name: (pids[0] if pids else procs[0].pid) for name, _, _, pids in targets}
        # Signer targets: wrk connects to the signer and sends absolute-form requests for this URL.
        proxied_target = f"http://127.0.0.1:{up}/"
        proxied = {"authedge signer", "jwtproxy signer"} if jwtproxy else set()
        # Fresh tokens per round: the signed route refuses a replay, so a round that outruns its
        # tokens reports non-2xx. It has served up to 17.6k req/s here; 25k a second leaves room.
        need = int(os.environ.get("SIGNED_TOKENS", str(25000 * DURATION)))
        # Round-robin: every repeat measures every target once, so drift on the machine hits all
        # targets alike instead of whichever ran last.
        # The order inside a round is shuffled (seeded, so a run can be repeated): a fixed order
        # let whatever ran just before (a 90k req/s direct run, the edge's own previous route)
        # bias the next target.
        import random
        order = random.Random(int(os.environ.get("SEED", "1")))
        runs = {name: [] for name, *_ in targets}
        for rnd in range(REPEATS):
            tokens = None
            if signed:
                tokens = f"{work}/tokens-{rnd}.txt"
                t0 = time.time()
                signed_tokens(tokens, need)
                print(f"  round {rnd + 1}: {need} fresh tokens signed in {time.time() - t0:.1f}s", file=sys.stderr)
            for name, url, headers, pids in order.sample(targets, len(targets)):
                runs[name].append(wrk(url, headers, pids, tokens=tokens if name in signed else None,
                                      proxied=proxied_target if name in proxied else None, **slow.get(name, {})))
            if signed:
                # Enough for the next round: 1.5x what the faster side used (a shortfall replays
                # tokens, which fails the run rather than passing cheaply).
                used = max(runs[n][-1]["requests"] for n in signed)
                need = max(need, int(used * 1.5) + 4 * CONNS)
        peak_rss_kb = {name: status_kb(tree(pid), "VmHWM") for name, pid in rss_root.items()}
        results = []
        for name, *_ in targets:
            med = dict(sorted(runs[name], key=lambda r: r["rps"])[len(runs[name]) // 2])
            cpus = sorted(r["cpu_us"] for r in runs[name] if r["cpu_us"])
            med["cpu_us"] = cpus[len(cpus) // 2] if cpus else None
            med["p99_ms"] = statistics.median(r["p99_ms"] for r in runs[name])
            med["errors"] = sum(r["errors"] for r in runs[name])
            med["name"] = name
            med["peak_rss_kb"] = peak_rss_kb[name]
            results.append(med)

        def ratio(name, base):
            return statistics.median(a["rps"] / b["rps"] for a, b in zip(runs[name], runs[base]))

        print(f"\nwrk -t1 -c{CONNS} -d{DURATION}s x {REPEATS} round-robin rounds; one worker per proxy; upstream nginx return 200")
        print("req/s, p99 and CPU: medians over rounds; ratios: medians of per-round ratios")
        print("peak RSS: VmHWM of the target's process tree after the rounds (authedge's routes share one process)")
        print(f"{'target':<22}{'req/s':>10}{'p99 ms':>9}{'CPU us/req':>12}{'peak RSS MB':>13}{'vs haproxy':>12}{'vs pingora':>12}{'vs public':>11}")
        for r in results:
            cpu = f"{r['cpu_us']:.1f}" if r["cpu_us"] else "-"
            vh = ratio(r["name"], "haproxy proxy")
            vb = f"{ratio(r['name'], 'pingora bare proxy'):.2f}" if bare else "-"
            vp = ratio(r["name"], "authedge public")
            print(f"{r['name']:<22}{r['rps']:>10.0f}{r['p99_ms']:>9.2f}{cpu:>12}{r['peak_rss_kb'] / 1024:>13.1f}"
                  f"{vh:>12.2f}{vb:>12}{vp:>11.2f}")
        print(f"authedge idle RSS after start: {idle_rss_kb / 1024:.1f} MB")
        pair_errors = []
        # HTTP/2 over TLS: h2load against HAProxy and the edge's TLS listener (same certificate),
        # round-robin like the wrk rounds.
        h2_targets = [
            ("haproxy h2", f"https://127.0.0.1:{hap_tls}/public", [], tree(haproxy.pid)),
            ("authedge h2 public", f"https://127.0.0.1:{edge_tls}/public", [], [edge.pid]),
            ("authedge h2 jwt", f"https://127.0.0.1:{edge_tls}/jwt", [f"Authorization: Bearer {jwt}"], [edge.pid]),
        ]
        h2_runs = {name: [] for name, *_ in h2_targets}
        h2_results = []
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
                h2_results.append({"name": name, "rps": med["rps"], "cpu_us": cpus[len(cpus) // 2] if cpus else None,
                                   "vs_haproxy_h2": vh, "rounds_rps": [r["rps"] for r in rs]})
                if any(r["errors"] for r in rs):
                    pair_errors.append(name)
        # The budgets compare auth routes with the public route of the same edge. Many short back-to-
        # back pairs (alternating which side goes first) measure that ratio with less of the
        # machine's drift than the long rounds above.
        pair_medians = []

        def pairs_of(name, side_a, side_b):
            """The median (and quartiles) of PAIRS back-to-back ratios, a over b; errors noted."""
            got_ratios = []
            for i in range(PAIRS):
                sides = [("a", *side_a), ("b", *side_b)]
                if i % 2:
                    sides.reverse()
                got = {k: wrk(u, h, (), PAIR_SECONDS) for k, u, h in sides}
                if got["a"]["errors"] or got["b"]["errors"]:
                    pair_errors.append(name)
                got_ratios.append(got["a"]["rps"] / got["b"]["rps"])
            q = statistics.quantiles(got_ratios, n=4) if len(got_ratios) > 1 else [got_ratios[0]] * 3
            return statistics.median(got_ratios), q[0], q[2]

        if PAIRS:
            print(f"\npaired runs: {PAIRS} pairs of wrk -t1 -c{CONNS} -d{PAIR_SECONDS}s, public vs each auth route"
                  " and each bare proxy")
            public_url = f"http://127.0.0.1:{edge_port}/public"
            for sc in (sc for sc in scenarios if sc["name"] not in excluded):
                url = f"http://127.0.0.1:{edge_port}{sc['path']}"
                med, q1, q3 = pairs_of(sc["name"], (url, sc["headers"]), (public_url, sc.get("public_headers", [])))
                peer = "authedge public + cookie" if sc.get("public_headers") else "authedge public"
                pair_medians.append((sc["name"], peer, med, q1, q3))
                print(f"  {sc['name']:<22} vs {peer[9:]}: median {med:.3f} (quartiles {q1:.3f}-{q3:.3f})")
            # The floor, paired too: the public route against each bare proxy.
            for peer, port in (("pingora bare proxy", barep), ("pingora bare + timeouts", baretp)) if bare else ():
                if peer in excluded or "authedge public" in excluded:
                    continue
                med, q1, q3 = pairs_of("authedge public", (public_url, []), (f"http://127.0.0.1:{port}/public", []))
                pair_medians.append(("authedge public", peer, med, q1, q3))
                print(f"  {'authedge public':<22} vs {peer}: median {med:.3f} (quartiles {q1:.3f}-{q3:.3f})")
        # Every authedge route against its peer, with its budget: medians of per-round ratios
        # (requests/s), and the peer's CPU per request over authedge's.
        by_name = {r["name"]: r for r in results}
        ratios = []
        for route, peer, budget, note in RATIOS:
            entry = {"route": route, "peer": peer, "budget": budget, "note": note, "method": "rounds"}
            missing = [n for n in (route, peer) if n not in by_name]
            if missing:
                entry["value"] = None
                entry["verdict"] = "n/a: " + ", ".join(
                    f"{n} {'left out: ' + excluded[n] if n in excluded else 'not run'}" for n in missing)
            else:
                entry["value"] = ratio(route, peer)
                a, b = by_name[route]["cpu_us"], by_name[peer]["cpu_us"]
                entry["cpu_ratio"] = b / a if a and b else None
                entry["verdict"] = "-" if budget is None else ("met" if entry["value"] >= budget else "NOT met")
            ratios.append(entry)
        for name, peer, med, q1, q3 in pair_medians:
            budget = next((b for r, p, b, _ in RATIOS if r == name and p == peer), None)
            ratios.append({"route": name, "peer": peer, "budget": budget, "method": "pairs",
                           "note": f"{PAIRS} paired runs, quartiles {q1:.3f}-{q3:.3f}", "value": med, "cpu_ratio": None,
                           "verdict": "-" if budget is None else ("met" if med >= budget else "NOT met")})
        print("\nratios: authedge route / peer, requests/s (median of per-round ratios; 'pairs': median of the paired runs)")
        print(f"{'route':<22}{'peer':<22}{'method':>7}{'ratio':>8}{'budget':>9}{'peer CPU/ours':>15}  verdict")
        for e in ratios:
            v = f"{e['value']:.2f}" if e["value"] is not None else "-"
            bud = f">={e['budget']:g}" if e["budget"] is not None else "-"
            cr = f"{e['cpu_ratio']:.2f}" if e.get("cpu_ratio") else "-"
            print(f"{e['route']:<22}{e['peer']:<22}{e['method']:>7}{v:>8}{bud:>9}{cr:>15}  {e['verdict']}"
                  + (f"  ({e['note']})" if e.get("note") else ""))
        print("\nreq/s per round:")
        for name, *_ in targets:
            print(f"  {name:<22}" + " ".join(f"{r['rps']:>7.0f}" for r in runs[name]))
        if excluded:
            print("\nleft out (failed the sanity check):")
            for name, why in excluded.items():
                print(f"  {name:<22} {why}")
        bad = [r["name"] for r in results if r["errors"]] + sorted(set(pair_errors))
        load_end = os.getloadavg()
        busy = load_start[0] > BUSY_LOAD
        record = {
            "started_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "seconds": round(time.time() - t_start, 1),
            "commit": git_head(),
            "cores": os.cpu_count(),
            "load_average_start": list(load_start),
            "load_average_end": list(load_end),
            "busy": busy,
            "label": LABEL or None,
            "profile": PROFILE,
            "binaries": {"authedge": BIN, "bare_proxy": BARE},
            "params": {"duration_s": DURATION, "repeats": REPEATS, "conns": CONNS, "pairs": PAIRS,
                       "pair_seconds": PAIR_SECONDS, "seed": int(os.environ.get("SEED", "1")),
                       "proxyauth_conns": PROXYAUTH_CONNS, "proxyauth_duration_s": PROXYAUTH_DURATION},
            "authedge_idle_rss_kb": idle_rss_kb,
            "targets": [{**{k: r[k] for k in ("name", "rps", "p99_ms", "cpu_us", "peak_rss_kb", "errors")},
                         "rounds_rps": [x["rps"] for x in runs[r["name"]]]} for r in results],
            "ratios": ratios,
            "left_out": excluded,
            "peers": peer_notes,
            "h2": h2_results,
            "non_2xx_in": bad,
        }
        json_path, svg_path = write_results(record)
        print(f"\nresults: {json_path}\nchart:   {svg_path}")
        if busy:
            print(f"note: the load average was {load_start[0]:.2f} at the start (> {BUSY_LOAD}; {load_end[0]:.2f} at the end): a busy machine, "
                  "so these figures are not verdicts (the file names say -busy)")
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
