//! One exchange with one upstream: the query built from the client's question under a random
//! ID, sent over UDP or TCP, and only an answer with that ID and question accepted (an answer
//! that does not match is dropped and waited past: no cache poisoning).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::Question;
use crate::request::ADVERTISED_UDP_SIZE;
use crate::wire::{HEADER_LEN, skip_name};

/// Header (RD set), the client's question, and an OPT record if the client sent one.
pub(super) fn build_query(id: u16, q: &Question<'_>) -> Vec<u8> {
    let mut p = Vec::with_capacity(HEADER_LEN + q.question.len() + 11);
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(q.edns)]);
    p.extend_from_slice(q.question);
    if q.edns {
        p.extend_from_slice(&[0, 0, 41]);
        p.extend_from_slice(&ADVERTISED_UDP_SIZE.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    p
}

/// Whether `resp` answers `query`: a response, same ID, same question (case-insensitively).
pub(super) fn matches(resp: &[u8], query: &[u8]) -> bool {
    if resp.len() < HEADER_LEN || resp[..2] != query[..2] || resp[2] & 0x80 == 0 {
        return false;
    }
    if u16::from_be_bytes([resp[4], resp[5]]) != 1 {
        return false;
    }
    let Some(end) = skip_name(query, HEADER_LEN).map(|e| e + 4) else {
        return false;
    };
    // The name case-insensitively, type and class exactly.
    resp.len() >= end
        && resp[HEADER_LEN..end - 4].eq_ignore_ascii_case(&query[HEADER_LEN..end - 4])
        && resp[end - 4..end] == query[end - 4..end]
}

pub(super) async fn exchange_udp(
    addr: SocketAddr,
    query: &[u8],
    _q: &Question<'_>,
    timeout: Duration,
) -> std::io::Result<Vec<u8>> {
    let bind: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let sock = UdpSocket::bind(bind).await?;
    sock.connect(addr).await?;
    sock.send(query).await?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = vec![0u8; 65_535];
    loop {
        let n = tokio::time::timeout_at(deadline, sock.recv(&mut buf))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "upstream timed out")
            })??;
        // A wrong ID or question is dropped, never used (no cache poisoning): keep waiting.
        if matches(&buf[..n], query) {
            buf.truncate(n);
            return Ok(buf);
        }
        tracing::debug!(upstream = %addr, "answer with a wrong ID or question dropped");
    }
}

pub(super) async fn exchange_tcp(
    addr: SocketAddr,
    query: &[u8],
    _q: &Question<'_>,
    timeout: Duration,
) -> std::io::Result<Vec<u8>> {
    let work = async {
        let mut stream = TcpStream::connect(addr).await?;
        let mut framed = Vec::with_capacity(query.len() + 2);
        framed.extend_from_slice(&(query.len() as u16).to_be_bytes());
        framed.extend_from_slice(query);
        stream.write_all(&framed).await?;
        loop {
            let len = stream.read_u16().await? as usize;
            let mut buf = vec![0u8; len];
            stream.read_exact(&mut buf).await?;
            if matches(&buf, query) {
                return Ok(buf);
            }
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "upstream timed out"))?
}
