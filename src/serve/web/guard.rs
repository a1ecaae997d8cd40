//! Who may call the web endpoint (docs/web.md), checked on every HTTP request and
//! WebSocket handshake before anything else:
//! - **`Host`** must name loopback (`127.0.0.1`, `localhost`, `[::1]`) and the endpoint's
//!   port, so that a DNS-rebinding page (evil.example resolving to 127.0.0.1) is refused.
//! - **`Origin`**, when sent (browsers always send it on a WebSocket and on POST), must be
//!   one of `web.allowed_origins` exactly, or the endpoint's own (the kiosk page it serves).
//! - **The token** grants: none (read-only), the kiosk page's, or the HIS's (every method);
//!   a token that is neither is refused outright.

use super::super::peer::Grant;
use super::tokens::Token;
use axum::http::{HeaderMap, StatusCode, header};

/// A refused request: the HTTP status and why, for the answer's JSON-RPC error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub why: String,
}

impl Refusal {
    fn forbidden(why: String) -> Refusal {
        Refusal {
            status: StatusCode::FORBIDDEN,
            why,
        }
    }
}

/// The tokens and the endpoint's port; the allowed origins come from the settings of the
/// moment (a reload changes them).
#[derive(Debug, Clone)]
pub struct Guard {
    port: u16,
    client: Token,
    kiosk: Token,
}

/// The WebSocket subprotocol every client names.
pub const PROTOCOL: &str = "medcard.jsonrpc";
/// The prefix of the subprotocol that carries a token (browsers cannot set headers on a
/// WebSocket).
pub const TOKEN_PROTOCOL_PREFIX: &str = "medcard.token.";

impl Guard {
    pub fn new(port: u16, client: Token, kiosk: Token) -> Guard {
        Guard {
            port,
            client,
            kiosk,
        }
    }

    /// `Host` names loopback and this port.
    pub fn check_host(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        check_host(headers, self.port)
    }

    /// `Origin`, when sent, is the endpoint's own or one of `allowed`.
    pub fn check_origin(&self, headers: &HeaderMap, allowed: &[String]) -> Result<(), Refusal> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin.to_str().unwrap_or("");
        if self.own_origins().any(|own| own == origin) || allowed.iter().any(|a| a == origin) {
            return Ok(());
        }
        Err(Refusal::forbidden(format!(
            "pages of origin {origin:?} may not call medcard: it is not in web.allowed_origins"
        )))
    }

    fn own_origins(&self) -> impl Iterator<Item = String> + '_ {
        ["127.0.0.1", "localhost", "[::1]"]
            .into_iter()
            .map(|host| format!("http://{host}:{}", self.port))
    }

    /// What `presented` grants; a token that is neither of ours is refused.
    pub fn grant(&self, presented: Option<&str>) -> Result<Grant, Refusal> {
        match presented {
            None => Ok(Grant::ReadOnly),
            Some(token) if self.client.matches(token) => Ok(Grant::Full),
            Some(token) if self.kiosk.matches(token) => Ok(Grant::Kiosk),
            Some(_) => Err(Refusal {
                status: StatusCode::UNAUTHORIZED,
                why: "the token is wrong: it is neither web.token_file's nor \
                      web.kiosk_token_file's"
                    .to_owned(),
            }),
        }
    }
}

/// `Host` names loopback and `port` (the web endpoint's, or the metrics listener's).
pub fn check_host(headers: &HeaderMap, port: u16) -> Result<(), Refusal> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let loopback = ["127.0.0.1", "localhost", "[::1]"]
        .iter()
        .any(|name| host == format!("{name}:{port}"));
    if loopback {
        return Ok(());
    }
    Err(Refusal::forbidden(format!(
        "Host {host:?} is not this workstation's loopback address (127.0.0.1:{port}, \
         localhost:{port} or [::1]:{port}); a page reaching medcard under another name \
         (DNS rebinding) is refused"
    )))
}

/// The token of a WebSocket handshake (`Sec-WebSocket-Protocol: medcard.jsonrpc,
/// medcard.token.<token>`).
pub fn websocket_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|protocol| protocol.trim().strip_prefix(TOKEN_PROTOCOL_PREFIX))
}

/// The token of an HTTP request (`Authorization: Bearer <token>`).
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn guard() -> Guard {
        Guard::new(8765, Token::for_tests("his"), Token::for_tests("kiosk"))
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name, HeaderValue::from_str(value).expect("header"));
        }
        map
    }

    #[test]
    fn hosts_other_than_loopback_and_our_port_are_refused() {
        let g = guard();
        for ok in ["127.0.0.1:8765", "localhost:8765", "[::1]:8765"] {
            assert!(
                g.check_host(&headers(&[(header::HOST, ok)])).is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "evil.example:8765",
            "127.0.0.1:80",
            "127.0.0.1",
            "localhost.evil:8765",
        ] {
            let refusal = g.check_host(&headers(&[(header::HOST, bad)])).unwrap_err();
            assert_eq!(refusal.status, StatusCode::FORBIDDEN);
            assert!(refusal.why.contains("DNS rebinding"), "{}", refusal.why);
        }
        assert!(g.check_host(&HeaderMap::new()).is_err());
    }

    #[test]
    fn origins_are_ours_or_listed_exactly() {
        let g = guard();
        let allowed = vec!["http://his.example:8080".to_owned()];
        let check = |origin: &str| g.check_origin(&headers(&[(header::ORIGIN, origin)]), &allowed);
        assert!(check("http://127.0.0.1:8765").is_ok());
        assert!(check("http://his.example:8080").is_ok());
        assert!(check("http://his.example:8081").is_err());
        assert!(check("http://his.example:8080.evil").is_err());
        assert!(check("null").is_err());
        assert!(g.check_origin(&HeaderMap::new(), &allowed).is_ok());
    }

    #[test]
    fn tokens_grant_by_whose_they_are() {
        let g = guard();
        assert_eq!(g.grant(None), Ok(Grant::ReadOnly));
        assert_eq!(g.grant(Some("his")), Ok(Grant::Full));
        assert_eq!(g.grant(Some("kiosk")), Ok(Grant::Kiosk));
        assert_eq!(
            g.grant(Some("hi")).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        let ws = headers(&[(
            header::SEC_WEBSOCKET_PROTOCOL,
            "medcard.jsonrpc, medcard.token.abc",
        )]);
        assert_eq!(websocket_token(&ws), Some("abc"));
        let http = headers(&[(header::AUTHORIZATION, "Bearer abc")]);
        assert_eq!(bearer_token(&http), Some("abc"));
    }
}
