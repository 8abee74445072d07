//! Where a webhook posts, checked before every connection: the URL's
//! scheme, then each address its host resolves to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Largest answer read from a receiver; the rest is ignored.
const MAX_ANSWER: usize = 16 * 1024;
/// How much of the answer is kept with the delivery.
const KEPT_ANSWER: usize = 500;

/// A parsed webhook URL.
#[derive(Debug, Clone)]
pub struct Target {
    https: bool,
    host: String,
    port: u16,
    /// Path and query, at least `/`.
    path: String,
}

/// Addresses no webhook may reach: link-local (which holds the cloud
/// metadata services at 169.254.169.254 and fd00:ec2::254), unspecified,
/// multicast and broadcast.
pub fn refused_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4 == Ipv4Addr::new(100, 100, 100, 200)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return refused_address(IpAddr::V4(v4));
            }
            (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6
                    == "fd00:ec2::254"
                        .parse::<Ipv6Addr>()
                        .unwrap_or(Ipv6Addr::UNSPECIFIED)
        }
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
        IpAddr::V4(v4) => v4.is_loopback(),
    }
}

impl Target {
    /// # Errors
    /// A message for a URL that is not `https://`, or `http://` to a
    /// loopback host (`localhost`, `127.0.0.0/8`, `::1`).
    pub fn parse(raw: &str) -> Result<Target, String> {
        let url = url::Url::parse(raw.trim()).map_err(|e| format!("url: {e}"))?;
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err("url: it has no host".into()),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err("url: credentials in the URL are not allowed; sign with the secret".into());
        }
        let https = match url.scheme() {
            "https" => true,
            "http" => {
                let loopback = host.eq_ignore_ascii_case("localhost")
                    || host.parse::<IpAddr>().is_ok_and(is_loopback);
                if !loopback {
                    return Err("url: use https:// (http:// is only for loopback addresses)".into());
                }
                false
            }
            other => return Err(format!("url: scheme {other:?}; use https://")),
        };
        if let Ok(ip) = host.parse::<IpAddr>()
            && refused_address(ip)
        {
            return Err(format!("url: {ip} is a link-local or metadata address"));
        }
        let mut path = url.path().to_string();
        if let Some(q) = url.query() {
            path.push('?');
            path.push_str(q);
        }
        Ok(Target {
            https,
            port: url
                .port_or_known_default()
                .unwrap_or(if https { 443 } else { 80 }),
            host,
            path,
        })
    }

    /// The address to connect to: the first one the host resolves to,
    /// after every one of them passed the checks.
    async fn resolve(&self) -> Result<SocketAddr, String> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("resolving {}: {e}", self.host))?
            .collect();
        if addrs.is_empty() {
            return Err(format!("{} has no address", self.host));
        }
        for addr in &addrs {
            if refused_address(addr.ip()) {
                return Err(format!(
                    "{} resolves to {}, a link-local or metadata address: refused",
                    self.host,
                    addr.ip()
                ));
            }
            if !self.https && !is_loopback(addr.ip()) {
                return Err(format!(
                    "{} resolves to {}, not loopback: http:// is refused",
                    self.host,
                    addr.ip()
                ));
            }
        }
        Ok(addrs[0])
    }

    /// Posts `body` with `headers`; the receiver's status and the start of
    /// its answer.
    ///
    /// # Errors
    /// Refused addresses, connection and TLS errors, timeouts, and answers
    /// that are not HTTP.
    pub async fn post(
        &self,
        tls: &TlsConnector,
        headers: &[(&str, String)],
        body: &str,
        timeout: Duration,
    ) -> Result<(u16, String), String> {
        let work = async {
            let addr = self.resolve().await?;
            let tcp = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("connecting to {addr}: {e}"))?;
            let _ = tcp.set_nodelay(true);
            if self.https {
                let name = rustls_pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| format!("TLS name {}: {e}", self.host))?;
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS with {}: {e}", self.host))?;
                self.exchange(stream, headers, body).await
            } else {
                self.exchange(tcp, headers, body).await
            }
        };
        tokio::time::timeout(timeout, work)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} s", timeout.as_secs())))
    }

    async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut stream: S,
        headers: &[(&str, String)],
        body: &str,
    ) -> Result<(u16, String), String> {
        let host = match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => format!("[{}]", self.host),
            _ => self.host.clone(),
        };
        let mut request = format!(
            "POST {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: emailin-webhooks\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.path,
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("sending: {e}"))?;
        stream.flush().await.map_err(|e| format!("sending: {e}"))?;
        let mut answer = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("reading the answer: {e}"))?;
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&chunk[..n]);
            if answer.len() >= MAX_ANSWER || complete(&answer) {
                break;
            }
        }
        let text = String::from_utf8_lossy(&answer);
        let status = text
            .strip_prefix("HTTP/1.")
            .and_then(|rest| rest.get(2..5))
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| "the answer is not HTTP".to_string())?;
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        Ok((status, body.chars().take(KEPT_ANSWER).collect()))
    }
}

/// Whether an answer with a `Content-Length` has all its body.
fn complete(answer: &[u8]) -> bool {
    let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
    head.lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .is_some_and(|len| answer.len() >= end + 4 + len)
}

/// The TLS client of webhook deliveries (the system's roots).
pub fn tls_connector() -> Result<TlsConnector, String> {
    crate::tls::client_config(None)
        .map(|config| TlsConnector::from(Arc::new(config)))
        .map_err(|e| format!("TLS setup: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_is_a_target() {
        assert!(Target::parse("https://crm.example.com/hooks?x=1").is_ok());
        assert!(Target::parse("http://127.0.0.1:9000/h").is_ok());
        assert!(Target::parse("http://localhost/h").is_ok());
        assert!(Target::parse("http://[::1]:8080/").is_ok());
        for bad in [
            "http://crm.example.com/h",
            "http://10.0.0.5/h",
            "https://169.254.169.254/latest/meta-data",
            "https://[fe80::1]/",
            "https://[fd00:ec2::254]/",
            "ftp://example.com/",
            "https://user:pw@example.com/",
            "not a url",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn metadata_and_link_local_addresses_are_refused() {
        for ip in [
            "169.254.169.254",
            "169.254.0.1",
            "fe80::1",
            "::ffff:169.254.169.254",
            "0.0.0.0",
        ] {
            assert!(refused_address(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["127.0.0.1", "93.184.215.14", "::1", "10.1.2.3"] {
            assert!(!refused_address(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn an_answer_with_its_length_is_complete() {
        assert!(complete(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
        assert!(!complete(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nok"));
        assert!(!complete(b"HTTP/1.1 200 OK\r\n"));
    }
}
