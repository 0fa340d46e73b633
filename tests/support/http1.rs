//! Just enough HTTP/1.1 to read Envoy's admin API and to send several requests
//! over one kept-alive connection, plaintext or inside TLS.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Long enough for a loaded machine, short enough that a hung server fails a
/// test quickly.
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One GET on a fresh connection that closes after the answer.
pub fn get(addr: SocketAddr, path: &str) -> Result<Response> {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    let mut reader = BufReader::new(stream);
    write_get(reader.get_mut(), path, false)?;
    read_response(&mut reader).with_context(|| format!("GET http://{addr}{path}"))
}

/// Writes a GET request; `keep_alive` leaves the connection open for the next.
pub fn write_get(out: &mut impl Write, path: &str, keep_alive: bool) -> Result<()> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    write!(
        out,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: {connection}\r\n\r\n"
    )?;
    out.flush()?;
    Ok(())
}

/// Reads one response: status line, headers, then a body framed by
/// Content-Length, by chunks, or by the end of the connection.
pub fn read_response(input: &mut impl BufRead) -> Result<Response> {
    let status_line = read_line(input)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("not an HTTP status line: {status_line:?}"))?;

    let mut length = None;
    let mut chunked = false;
    loop {
        let line = read_line(input)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap_or((&line, ""));
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().context("bad Content-Length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }

    let body = match (chunked, length) {
        (true, _) => read_chunked(input)?,
        (false, Some(length)) => {
            let mut body = vec![0; length];
            input.read_exact(&mut body)?;
            body
        }
        (false, None) => {
            let mut body = Vec::new();
            input.read_to_end(&mut body)?;
            body
        }
    };
    Ok(Response { status, body })
}

fn read_chunked(input: &mut impl BufRead) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let size_line = read_line(input)?;
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .with_context(|| format!("bad chunk size {size_line:?}"))?;
        if size == 0 {
            // Trailers, if any, end with an empty line.
            while !read_line(input)?.is_empty() {}
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        input.read_exact(&mut body[start..])?;
        read_line(input)?;
    }
}

fn read_line(input: &mut impl BufRead) -> Result<String> {
    let mut line = String::new();
    if input.read_line(&mut line)? == 0 {
        bail!("connection closed in the middle of a response");
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}
