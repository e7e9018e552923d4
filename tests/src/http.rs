//! Plain HTTP/1.1 requests (`Connection: close`) over a TCP stream to the
//! services' HTTP endpoints: `/metrics`, `/healthz`, `/readyz` on every
//! service's metrics port and the edge's `/auth/login`. No HTTP client crate,
//! so a test sees the response as the service wrote it.
//!
//! [`http_response`] is the wire exchange; [`http_request`] (status code and
//! body), [`http_get`] (status line and body) and [`scrape_metrics`] read it.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, anyhow};

/// How long a request may take before the test gives up on it.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `method path` (with `body` as JSON, if any) and returns the whole
/// response as text: status line, headers and body.
pub async fn http_response(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.with_context(|| format!("connect to {addr}"))?;
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.context("send the request")?;
    let mut response = Vec::new();
    tokio::time::timeout(RESPONSE_TIMEOUT, stream.read_to_end(&mut response))
        .await
        .context("response timed out")?
        .context("read the response")?;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

/// Sends `method path` like [`http_response`]; returns the status code and
/// the body (de-chunked).
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let (status_line, body) = split_response(&http_response(addr, method, path, body).await?)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| anyhow!("no status in {status_line}"))?;
    Ok((status, body))
}

/// Sends `GET path`; returns the status line and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(String, String)> {
    split_response(&http_response(addr, "GET", path, None).await?)
}

/// Reads a service's `/metrics` text.
pub async fn scrape_metrics(addr: SocketAddr) -> anyhow::Result<String> {
    let (status, body) = http_get(addr, "/metrics").await?;
    anyhow::ensure!(status.contains(" 200"), "metrics answered {status}");
    Ok(body)
}

/// The value of one sample in Prometheus text (`name{labels} value`); the
/// sum over label sets when `name` has several. `None` if absent.
pub fn metric_value(metrics: &str, name: &str) -> Option<f64> {
    let mut total = None;
    for line in metrics.lines().filter(|line| !line.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let series_name = series.split('{').next().unwrap_or(series);
        if series_name == name
            && let Ok(value) = value.parse::<f64>()
        {
            *total.get_or_insert(0.0) += value;
        }
    }
    total
}

/// Splits a response into its status line and its body (de-chunked when
/// the response is `transfer-encoding: chunked`).
fn split_response(response: &str) -> anyhow::Result<(String, String)> {
    let (head, rest) = response.split_once("\r\n\r\n").ok_or_else(|| anyhow!("malformed response: {response}"))?;
    let status_line = head.lines().next().unwrap_or_default().to_owned();
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    let body = if chunked { dechunk(rest) } else { rest.to_owned() };
    Ok((status_line, body))
}

fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || after.len() < size {
            break;
        }
        body.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    body
}
