//! Addresses of peers to dial, as GUN writes them (`http://host:port/gun`, `https://…`) or as
//! WebSocket URLs (`ws://host:port/gun`, `wss://…`).

/// A peer address, checked and turned into the WebSocket URL to dial.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerUrl {
    /// `ws://host:port/path`, or `wss://` for TLS.
    pub ws_url: String,
    /// Whether the connection is encrypted (`wss://` or `https://`).
    pub tls: bool,
    /// The host name or address.
    pub host: String,
    /// The port (80, or 443 with TLS, when none is given).
    pub port: u16,
    /// `host:port` as written.
    pub authority: String,
    /// The path and query (`/gun` when none is given).
    pub path: String,
}

impl PeerUrl {
    /// Parses `ws://`, `wss://`, `http://` or `https://` addresses (GUN peers are written
    /// `http://host:port/gun`). The path defaults to `/gun`.
    pub fn parse(url: &str) -> Result<PeerUrl, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("peer '{url}' is not a URL (expected ws://host:port/gun)"))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "ws" | "http" => false,
            "wss" | "https" => true,
            other => {
                return Err(format!(
                    "peer '{url}': unsupported scheme '{other}' (use ws://, wss://, http:// or https://)"
                ))
            }
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let path = if path.is_empty() || path == "/" {
            "/gun"
        } else {
            path
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("peer '{url}': expected host:port after the scheme"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            // An IPv6 literal without a port: `[::1]`.
            Some((h, p)) if !p.contains(']') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| format!("peer '{url}': bad port '{p}'"))?;
                (h, port)
            }
            _ => (authority, if tls { 443 } else { 80 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("peer '{url}': no host"));
        }
        let scheme = if tls { "wss" } else { "ws" };
        Ok(PeerUrl {
            ws_url: format!("{scheme}://{authority}{path}"),
            tls,
            host: host.to_owned(),
            port,
            authority: authority.to_owned(),
            path: path.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::PeerUrl;

    #[test]
    fn gun_and_websocket_forms() {
        let p = PeerUrl::parse("http://127.0.0.1:8765/gun").unwrap();
        assert_eq!(p.ws_url, "ws://127.0.0.1:8765/gun");
        assert_eq!((p.host.as_str(), p.port), ("127.0.0.1", 8765));
        let p = PeerUrl::parse("ws://localhost:9000").unwrap();
        assert_eq!(p.ws_url, "ws://localhost:9000/gun");
        let p = PeerUrl::parse("ws://[::1]:9000/gun?x=1").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("::1", 9000));
        assert_eq!(p.ws_url, "ws://[::1]:9000/gun?x=1");
        let p = PeerUrl::parse("ws://relay.example/gun").unwrap();
        assert_eq!((p.port, p.tls), (80, false));
    }

    #[test]
    fn tls_forms() {
        let p = PeerUrl::parse("https://relay.example/gun").unwrap();
        assert_eq!(
            (p.ws_url.as_str(), p.port, p.tls),
            ("wss://relay.example/gun", 443, true)
        );
        let p = PeerUrl::parse("wss://127.0.0.1:8443").unwrap();
        assert_eq!(
            (p.ws_url.as_str(), p.port, p.tls),
            ("wss://127.0.0.1:8443/gun", 8443, true)
        );
    }

    #[test]
    fn refusals_say_why() {
        for (url, says) in [
            ("127.0.0.1:8765", "not a URL"),
            ("ftp://x/gun", "unsupported scheme"),
            ("ws://:80/gun", "no host"),
            ("ws:///gun", "host:port"),
            ("ws://h:99999/gun", "bad port"),
        ] {
            let e = PeerUrl::parse(url).unwrap_err();
            assert!(e.contains(says), "{url}: {e}");
        }
    }
}
