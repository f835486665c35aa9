//! Published test vectors: Wycheproof JWS (C2SP/wycheproof) and RFC 7520 section 4.

use super::*;

/// Wycheproof's JWS vectors: a test marked invalid must never verify; valid ones verify unless
/// we refuse the key or algorithm on purpose (RSA < 2048, P-521, an `alg` the key does not
/// declare).
#[test]
fn wycheproof_jws_vectors() {
    let doc: Value = serde_json::from_slice(&read("wycheproof_jws.json")).unwrap();
    let (mut accepted_valid, mut checked_invalid) = (0, 0);
    // The file lists one JWS both as valid (tcId 357) and invalid (367, 370): such contradictory
    // entries are skipped.
    let valid: std::collections::HashSet<&str> = doc["testGroups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["tests"].as_array().unwrap())
        .filter(|t| t["result"] == "valid")
        .filter_map(|t| t["jws"].as_str())
        .collect();
    for g in doc["testGroups"].as_array().unwrap() {
        let key: Option<VerifyKey> = if let Some(public) = g.get("public") {
            parse_jwk(
                public,
                &[
                    Algorithm::RS256,
                    Algorithm::RS384,
                    Algorithm::RS512,
                    Algorithm::PS256,
                    Algorithm::PS384,
                    Algorithm::PS512,
                ],
            )
            .ok()
        } else {
            let p = &g["private"];
            (p["kty"] == "oct").then(|| VerifyKey {
                kid: None,
                family: AlgorithmFamily::Hmac,
                algs: vec![Algorithm::HS256],
                key: DecodingKey::from_secret(
                    &URL_SAFE_NO_PAD.decode(p["k"].as_str().unwrap()).unwrap(),
                ),
            })
        };
        for t in g["tests"].as_array().unwrap() {
            let Some(jws) = t["jws"].as_str() else {
                continue;
            };
            let ok = match (&key, split(jws, 1 << 20)) {
                (Some(k), Ok(parsed)) => signature_ok(&parsed, k),
                _ => false,
            };
            match t["result"].as_str().unwrap() {
                "invalid" if valid.contains(jws) => {}
                "invalid" => {
                    checked_invalid += 1;
                    assert!(!ok, "tcId {} ({}) verified", t["tcId"], t["comment"]);
                }
                "valid" if ok => accepted_valid += 1,
                _ => {}
            }
        }
    }
    assert!(checked_invalid > 300, "{checked_invalid}");
    assert!(accepted_valid >= 30, "{accepted_valid}");
}

/// RFC 7520 §4 examples: each verifies with its key (ES512 is not offered: refused), and each
/// tampered copy never verifies.
#[test]
fn rfc7520_examples() {
    let doc: Value = serde_json::from_slice(&read("rfc7520_jws.json")).unwrap();
    let keys = doc["keys"].as_object().unwrap();
    let all_rsa = [Algorithm::RS256, Algorithm::PS384];
    let mut verified = 0;
    for case in doc["jws_compact"].as_array().unwrap() {
        let jwk = &keys[case["key"].as_str().unwrap()];
        let key = if jwk["kty"] == "oct" {
            Some(VerifyKey {
                kid: None,
                family: AlgorithmFamily::Hmac,
                algs: vec![Algorithm::HS256],
                key: DecodingKey::from_secret(
                    &URL_SAFE_NO_PAD.decode(jwk["k"].as_str().unwrap()).unwrap(),
                ),
            })
        } else {
            let mut j = jwk.clone();
            j.as_object_mut().unwrap().remove("alg");
            parse_jwk(&j, &all_rsa).ok()
        };
        let ok = match (key, split(case["jws"].as_str().unwrap(), 1 << 20)) {
            (Some(k), Ok(parsed)) => signature_ok(&parsed, &k),
            _ => false,
        };
        let section = case["section"].as_str().unwrap();
        match (
            case["expect"].as_str().unwrap(),
            case["alg"].as_str().unwrap(),
        ) {
            ("valid", "ES512") => assert!(!ok, "{section}: ES512 is not supported"),
            ("valid", _) => {
                assert!(ok, "{section}");
                verified += 1;
            }
            _ => assert!(!ok, "{section}"),
        }
    }
    assert_eq!(verified, 3);
}
