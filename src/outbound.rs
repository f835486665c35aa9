//! The request-time outbound HTTP client: key fetches, token exchanges, registry lookups.
//!
//! Every call runs on the outbound runtime (its own worker threads, alive for the process), so a
//! call made from a Pingora worker neither blocks it nor ties pooled connections to a runtime
//! that may be busy; the caller awaits the result. Each call has a deadline for the whole
//! exchange (connect, send, read), a bound on the response body, and follows no redirect unless
//! it asks (then at most 3, never from https down to http).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

/// Default deadline of one call.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(5);
/// Default bound of a response body.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

/// Why a call produced no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    #[error("{url}: no answer within {deadline:?}")]
    Timeout { url: String, deadline: Duration },
    #[error("{url}: response body larger than {max} bytes")]
    TooLarge { url: String, max: usize },
    #[error("{url}: {reason}")]
    Failed { url: String, reason: String },
    #[error("the outbound runtime is gone")]
    Runtime,
}

/// A request body.
#[derive(Debug, Clone, Default)]
pub enum Body {
    #[default]
    Empty,
    /// `application/x-www-form-urlencoded`.
    Form(Vec<(String, String)>),
    /// `application/json`.
    Json(serde_json::Value),
}

/// One outbound request, built with [`Call::get`] / [`Call::post_form`] and the setters.
#[derive(Debug, Clone)]
pub struct Call {
    method: Method,
    url: String,
    headers: HeaderMap,
    body: Body,
    basic: Option<(String, String)>,
    deadline: Duration,
    max_body: usize,
    follow_redirects: bool,
}

impl Call {
    pub fn new(method: Method, url: impl Into<String>) -> Call {
        Call {
            method,
            url: url.into(),
            headers: HeaderMap::new(),
            body: Body::Empty,
            basic: None,
            deadline: DEFAULT_DEADLINE,
            max_body: DEFAULT_MAX_BODY,
            follow_redirects: false,
        }
    }

    pub fn get(url: impl Into<String>) -> Call {
        Call::new(Method::GET, url)
    }

    pub fn post_form(url: impl Into<String>, form: Vec<(String, String)>) -> Call {
        Call::new(Method::POST, url).body(Body::Form(form))
    }

    pub fn body(mut self, body: Body) -> Call {
        self.body = body;
        self
    }

    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Call {
        self.headers.append(name, value);
        self
    }

    /// HTTP Basic client authentication (RFC 6749 §2.3.1 form-encodes both parts first; the
    /// caller passes them as they go on the wire).
    pub fn basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Call {
        self.basic = Some((user.into(), password.into()));
        self
    }

    pub fn deadline(mut self, d: Duration) -> Call {
        self.deadline = d;
        self
    }

    pub fn max_body(mut self, n: usize) -> Call {
        self.max_body = n;
        self
    }

    pub fn follow_redirects(mut self, yes: bool) -> Call {
        self.follow_redirects = yes;
        self
    }
}

/// A response read whole (within the call's bound).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// The client and the runtime it runs on. One per process, held by the context.
#[derive(Debug, Clone)]
pub struct Outbound {
    direct: reqwest::Client,
    following: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("authedge/", env!("CARGO_PKG_VERSION")))
}

impl Outbound {
    /// Clients that run on `runtime` (give it worker threads of its own).
    pub fn new(runtime: tokio::runtime::Handle) -> Result<Outbound, reqwest::Error> {
        let direct = builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let following = builder()
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                let downgrade = attempt.url().scheme() != "https"
                    && attempt.previous().iter().any(|u| u.scheme() == "https");
                if downgrade {
                    attempt.error("redirect from https to http refused")
                } else if attempt.previous().len() > 3 {
                    attempt.error("too many redirects")
                } else {
                    attempt.follow()
                }
            }))
            .build()?;
        Ok(Outbound {
            direct,
            following,
            runtime,
        })
    }

    /// The runtime calls run on (for background work that belongs with them).
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// Send `call` on the outbound runtime and wait for its whole response. If the caller goes
    /// away, the call still ends by its deadline.
    pub async fn send(&self, call: Call) -> Result<Reply, OutboundError> {
        let client = if call.follow_redirects {
            self.following.clone()
        } else {
            self.direct.clone()
        };
        let job = self.runtime.spawn(async move {
            let (url, deadline) = (call.url.clone(), call.deadline);
            match tokio::time::timeout(deadline, exchange(&client, call)).await {
                Ok(r) => r,
                Err(_) => Err(OutboundError::Timeout { url, deadline }),
            }
        });
        job.await.unwrap_or(Err(OutboundError::Runtime))
    }
}

async fn exchange(client: &reqwest::Client, call: Call) -> Result<Reply, OutboundError> {
    let url = call.url;
    let failed = |e: &dyn std::fmt::Display| OutboundError::Failed {
        url: url.clone(),
        reason: e.to_string(),
    };
    let mut req = client.request(call.method, &url).headers(call.headers);
    if let Some((user, password)) = call.basic {
        req = req.basic_auth(user, Some(password));
    }
    req = match call.body {
        Body::Empty => req,
        Body::Form(pairs) => req.form(&pairs),
        Body::Json(v) => req.json(&v),
    };
    let mut resp = req.send().await.map_err(|e| failed(&e))?;
    let too_large = || OutboundError::TooLarge {
        url: url.clone(),
        max: call.max_body,
    };
    if resp
        .content_length()
        .is_some_and(|l| l > call.max_body as u64)
    {
        return Err(too_large());
    }
    let status = resp.status();
    let headers = std::mem::take(resp.headers_mut());
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| failed(&e))? {
        if body.len() + chunk.len() > call.max_body {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Reply {
        status,
        headers,
        body: Bytes::from(body),
    })
}

/// The process's outbound runtime: two worker threads of its own.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("authedge-out")
        .enable_all()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A one-shot HTTP server answering each connection with `reply`; returns its base URL.
    fn serve(reply: &'static str) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for mut s in l.incoming().flatten() {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = s.write_all(reply.as_bytes());
            }
        });
        format!("http://{addr}")
    }

    fn client() -> (tokio::runtime::Runtime, Outbound) {
        let rt = runtime().unwrap();
        let out = Outbound::new(rt.handle().clone()).unwrap();
        (rt, out)
    }

    #[test]
    fn no_redirect_unless_asked_bounded_body_and_deadline() {
        let (rt, out) = client();
        let caller = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let redirect = serve(
            "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:9/x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        );
        let r = caller.block_on(out.send(Call::get(&redirect))).unwrap();
        assert_eq!(r.status, StatusCode::FOUND);
        let big = serve("HTTP/1.1 200 OK\r\ncontent-length: 20\r\nconnection: close\r\n\r\n01234567890123456789");
        let e = caller
            .block_on(out.send(Call::get(&big).max_body(10)))
            .unwrap_err();
        assert!(matches!(e, OutboundError::TooLarge { max: 10, .. }));
        let ok = caller.block_on(out.send(Call::get(&big))).unwrap();
        assert_eq!(&ok.body[..], b"01234567890123456789");
        // A server that accepts and never answers.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", silent.local_addr().unwrap());
        let e = caller
            .block_on(out.send(Call::get(&url).deadline(Duration::from_millis(200))))
            .unwrap_err();
        assert!(matches!(e, OutboundError::Timeout { .. }), "{e}");
        drop(rt);
    }

    #[test]
    fn form_post_reaches_the_server() {
        let (_rt, out) = client();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/token", l.local_addr().unwrap());
        let seen = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let (mut buf, mut n) = (vec![0u8; 4096], 0);
            // Headers and body may come in separate segments: read until the body is in.
            while !String::from_utf8_lossy(&buf[..n]).contains("authorization_code") {
                match s.read(&mut buf[n..]) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => n += k,
                }
            }
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}");
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        let caller = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let form = vec![("grant_type".into(), "authorization_code".into())];
        let r = caller
            .block_on(out.send(Call::post_form(&url, form).basic_auth("c", "s")))
            .unwrap();
        assert_eq!(r.json().unwrap(), serde_json::json!({}));
        let req = seen.join().unwrap();
        assert!(req.contains("grant_type=authorization_code"), "{req}");
        assert!(
            req.to_ascii_lowercase()
                .contains("authorization: basic yzpz"),
            "{req}"
        );
    }
}
