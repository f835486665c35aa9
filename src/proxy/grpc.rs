//! gRPC answers for requests the edge refuses: a gRPC client reads the status from
//! `grpc-status`, not from the HTTP status, so a denied call (`content-type: application/grpc*`)
//! gets HTTP 200 with `grpc-status` and `grpc-message` in a trailers-only response, as Envoy's
//! jwt_authn does.

use http::{header, HeaderName, HeaderValue, StatusCode};
use pingora::prelude::*;
use pingora_http::{RequestHeader, ResponseHeader};

static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// Whether the client speaks gRPC (`application/grpc`, `application/grpc+proto`, ...).
pub fn is_grpc(req: &RequestHeader) -> bool {
    req.headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The gRPC status code for an HTTP status the edge answers with.
pub fn code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 413 => "3",        // INVALID_ARGUMENT (malformed, too large)
        401 => "16",             // UNAUTHENTICATED
        403 => "7",              // PERMISSION_DENIED
        404 | 405 | 501 => "12", // UNIMPLEMENTED (no such route or method)
        408 | 504 => "4",        // DEADLINE_EXCEEDED
        429 => "8",              // RESOURCE_EXHAUSTED
        502 | 503 => "14",       // UNAVAILABLE
        _ => "13",               // INTERNAL
    }
}

/// Write the gRPC answer: 200, `content-type: application/grpc` and the denial's headers
/// (`WWW-Authenticate`, `Retry-After`), then no message and `grpc-status` with `grpc-message`
/// (the short reason word, never request data). On HTTP/2 the status goes in trailers
/// (Pingora ends a header-only response with an empty DATA frame, which gRPC clients do not
/// take as trailers-only); on HTTP/1.1 in the headers.
pub async fn write_denial(
    session: &mut Session,
    status: StatusCode,
    headers: &[(HeaderName, HeaderValue)],
    reason: &'static str,
    close: bool,
) -> Result<()> {
    let message = if reason.is_empty() {
        status.canonical_reason().unwrap_or("error")
    } else {
        reason
    };
    let code = HeaderValue::from_static(code(status));
    let message = HeaderValue::from_static(message);
    let mut resp = ResponseHeader::build(StatusCode::OK, Some(headers.len() + 4))?;
    resp.insert_header(header::CONTENT_TYPE, "application/grpc")?;
    for (n, v) in headers {
        resp.append_header(n.clone(), v.clone())?;
    }
    if session.is_http2() {
        session.write_response_header(Box::new(resp), false).await?;
        let mut trailers = http::HeaderMap::with_capacity(2);
        trailers.insert(GRPC_STATUS.clone(), code);
        trailers.insert(GRPC_MESSAGE.clone(), message);
        return session.write_response_trailers(trailers).await;
    }
    resp.insert_header(GRPC_STATUS.clone(), code)?;
    resp.insert_header(GRPC_MESSAGE.clone(), message)?;
    resp.insert_header(header::CONTENT_LENGTH, 0)?;
    if close {
        session.set_keepalive(None);
        resp.insert_header(header::CONNECTION, "close")?;
    }
    session.write_response_header(Box::new(resp), true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_as_envoy_maps_them() {
        assert_eq!(code(StatusCode::UNAUTHORIZED), "16");
        assert_eq!(code(StatusCode::FORBIDDEN), "7");
        assert_eq!(code(StatusCode::SERVICE_UNAVAILABLE), "14");
        assert_eq!(code(StatusCode::TOO_MANY_REQUESTS), "8");
        assert_eq!(code(StatusCode::NOT_FOUND), "12");
        assert_eq!(code(StatusCode::INTERNAL_SERVER_ERROR), "13");
    }

    #[test]
    fn grpc_content_types() {
        let mut req = RequestHeader::build("POST", b"/svc/M", None).unwrap();
        assert!(!is_grpc(&req));
        req.insert_header("content-type", "application/grpc+proto")
            .unwrap();
        assert!(is_grpc(&req));
        req.insert_header("content-type", "application/json")
            .unwrap();
        assert!(!is_grpc(&req));
    }
}
