//! The daemon's control socket (`/run/intune-ctl/control.sock`, mode 0600): one JSON request a
//! line, one JSON answer a line. It serves what only the running daemon knows (`status`) and
//! what only it can do (`refresh`); counters and rules are read from bpffs and the state
//! directory without it.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::{fs::PermissionsExt as _, net::UnixStream},
    path::Path,
    time::Duration,
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

pub const DEFAULT_SOCKET: &str = "/run/intune-ctl/control.sock";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "lowercase")]
pub enum Request {
    Status,
    Refresh,
}

/// Binds the socket: its directory created private when missing (an existing one is left as
/// it is), a stale socket replaced, the socket 0600.
pub fn bind(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.exists()) {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    // A socket that answers belongs to a running daemon: two would fight over the pins.
    if UnixStream::connect(path).is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "another intune-ctl daemon answers on it",
        ));
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Reads one request from `stream`.
pub async fn read_request(stream: &mut tokio::net::UnixStream) -> anyhow::Result<Request> {
    use tokio::io::AsyncBufReadExt as _;
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(stream);
    tokio::time::timeout(Duration::from_secs(2), reader.read_line(&mut line))
        .await
        .context("no request within 2 s")??;
    serde_json::from_str(line.trim()).with_context(|| format!("not a request: {:?}", line.trim()))
}

pub async fn write_answer(
    stream: &mut tokio::net::UnixStream,
    answer: &serde_json::Value,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt as _;
    let mut line = answer.to_string();
    line.push('\n');
    stream.write_all(line.as_bytes()).await
}

/// Asks the daemon at `path`; `timeout` bounds the whole exchange.
pub fn ask(path: &Path, request: Request, timeout: Duration) -> anyhow::Result<serde_json::Value> {
    let mut stream = UnixStream::connect(path).with_context(|| {
        format!(
            "connecting to the daemon at {} (is it running?)",
            path.display()
        )
    })?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut line = serde_json::to_string(&request)?;
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .context("reading the daemon's answer")?;
    serde_json::from_str(&answer).context("the daemon's answer is not JSON")
}
