//! `authedge check`: every invalid fixture fails (exit 1) with exactly the problems in its
//! `.expect` file, one `path: message` per line; valid configs print a summary (exit 0).

mod common;

use std::path::Path;
use std::process::Command;

use common::check;

#[test]
fn invalid_fixtures_report_every_problem_with_its_path() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let expect = std::fs::read_to_string(path.with_extension("expect"))
            .unwrap_or_else(|_| panic!("{} has no .expect file", path.display()));
        let (code, out) = check(&path);
        assert_eq!(code, 1, "{}: {out}", path.display());
        assert_eq!(out.trim_end(), expect.trim_end(), "{}", path.display());
        seen += 1;
    }
    assert!(seen >= 10, "only {seen} fixtures");
}

#[test]
fn a_named_problem_for_an_unknown_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.yaml");
    std::fs::write(
        &p,
        "listeners: [ { address: \"127.0.0.1:8080\" } ]\nupstreams: { api: { echo: true } }\nroutes:\n  - { path: /, upstream: api, public: true }\n  - { path: /x, upstream: api, public: true }\n  - { path: /y, upstream: api2, public: true }\n",
    )
    .unwrap();
    let (code, out) = check(&p);
    assert_eq!(code, 1);
    assert_eq!(out.trim(), "routes[2].upstream: unknown upstream \"api2\"");
}

#[test]
fn shipped_configs_pass_check() {
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let mut seen = 0;
    for entry in std::fs::read_dir(conf).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) == Some("yaml") {
            let (code, out) = check(&path);
            assert_eq!(code, 0, "{}: {out}", path.display());
            // Drop-in files (jwtproxy) print notes first; the last line is the summary.
            assert!(
                out.trim_end()
                    .lines()
                    .last()
                    .unwrap_or("")
                    .starts_with("ok: "),
                "{out}"
            );
            seen += 1;
        }
    }
    assert!(seen >= 3, "only {seen} configs in conf/");
}

#[test]
fn missing_file_is_a_clear_error() {
    let (code, out) = check(Path::new("/nonexistent/authedge.yaml"));
    assert_eq!(code, 1);
    assert!(
        out.contains("cannot read /nonexistent/authedge.yaml"),
        "{out}"
    );
}

#[test]
fn config_from_the_environment_variable() {
    let out = Command::new(common::bin())
        .arg("check")
        .env(
            "AUTHEDGE_CONFIG",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/quickstart.yaml"),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn relative_key_files_resolve_next_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt");
    std::fs::copy(fixtures.join("rsa.pub.pem"), dir.path().join("idp.pem")).unwrap();
    let p = dir.path().join("c.yaml");
    std::fs::write(
        &p,
        "listeners: [ { address: \"127.0.0.1:8080\" } ]\nupstreams: { api: { echo: true } }\nroutes:\n  - path: /\n    upstream: api\n    auth: [ { type: jwt, providers: [ { issuer: \"https://idp\", keys_file: idp.pem } ] } ]\n",
    )
    .unwrap();
    // Run from another directory: the key file is found next to the config, not in the cwd.
    let out = Command::new(common::bin())
        .current_dir("/")
        .arg("check")
        .arg("--config")
        .arg(&p)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    std::fs::remove_file(dir.path().join("idp.pem")).unwrap();
    let (code, text) = check(&p);
    assert_eq!(code, 1);
    assert!(
        text.contains("routes[0].auth[0].providers[0].keys_file"),
        "{text}"
    );
}
