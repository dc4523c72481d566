//! A minimal RESP client for the Redis checks (a few commands, no pipelining).

use std::io;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A Redis reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Status(String),
    /// `-ERR ...`
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$...` (None for a null bulk string)
    Bulk(Option<Vec<u8>>),
    /// `*...`
    Array(Vec<Reply>),
}

/// One connection.
#[derive(Debug)]
pub struct Connection {
    stream: BufReader<TcpStream>,
}

/// The host and port, and the password, of a `redis://:password@host:port` URL.
pub fn parse_url(url: &str) -> (String, Option<String>) {
    let rest = url.strip_prefix("redis://").expect("redis:// URL");
    match rest.rsplit_once('@') {
        Some((auth, host)) => {
            (host.trim_end_matches('/').to_owned(), Some(auth.trim_start_matches(':').to_owned()))
        }
        None => (rest.trim_end_matches('/').to_owned(), None),
    }
}

impl Connection {
    /// Connects without authenticating.
    pub async fn connect(address: &str) -> io::Result<Connection> {
        Ok(Connection { stream: BufReader::new(TcpStream::connect(address).await?) })
    }

    /// Sends a command and reads its reply.
    pub async fn command(&mut self, args: &[&str]) -> io::Result<Reply> {
        let mut frame = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            frame.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            frame.extend_from_slice(arg.as_bytes());
            frame.extend_from_slice(b"\r\n");
        }
        self.stream.get_mut().write_all(&frame).await?;
        self.read_reply().await
    }

    async fn read_line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        if self.stream.read_line(&mut line).await? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        Ok(line.trim_end_matches("\r\n").to_owned())
    }

    fn read_reply(
        &mut self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<Reply>> + Send + '_>> {
        Box::pin(async move {
            let line = self.read_line().await?;
            let bad =
                || io::Error::new(io::ErrorKind::InvalidData, format!("bad reply line {line:?}"));
            let (kind, rest) = line.split_at_checked(1).ok_or_else(bad)?;
            match kind {
                "+" => Ok(Reply::Status(rest.to_owned())),
                "-" => Ok(Reply::Error(rest.to_owned())),
                ":" => rest.parse().map(Reply::Integer).map_err(|_| bad()),
                "$" => {
                    let len: i64 = rest.parse().map_err(|_| bad())?;
                    if len < 0 {
                        return Ok(Reply::Bulk(None));
                    }
                    let mut data = vec![0; usize::try_from(len).map_err(|_| bad())? + 2];
                    self.stream.read_exact(&mut data).await?;
                    data.truncate(data.len() - 2);
                    Ok(Reply::Bulk(Some(data)))
                }
                "*" => {
                    let len: i64 = rest.parse().map_err(|_| bad())?;
                    let mut items = Vec::new();
                    for _ in 0..len.max(0) {
                        items.push(self.read_reply().await?);
                    }
                    Ok(Reply::Array(items))
                }
                _ => Err(bad()),
            }
        })
    }
}
