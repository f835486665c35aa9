//! The built-in `echo` upstream: a JSON description of the request exactly as an upstream would
//! have received it (after header stripping and identity injection). For quick starts and tests.

use pingora_http::RequestHeader;

/// Render the prepared upstream request as JSON.
pub fn render(req: &RequestHeader) -> Vec<u8> {
    let mut headers = serde_json::Map::new();
    for (name, value) in req.headers.iter() {
        let v = serde_json::Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned());
        match headers.get_mut(name.as_str()) {
            Some(serde_json::Value::Array(a)) => a.push(v),
            Some(prev) => {
                let first = prev.take();
                *prev = serde_json::Value::Array(vec![first, v]);
            }
            None => {
                headers.insert(name.as_str().to_string(), v);
            }
        }
    }
    let body = serde_json::json!({
        "method": req.method.as_str(),
        "path": req.uri.path(),
        "query": req.uri.query(),
        "headers": headers,
    });
    serde_json::to_vec(&body).unwrap_or_default()
}
