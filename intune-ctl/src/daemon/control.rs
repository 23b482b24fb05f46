//! The daemon's control socket (`/run/intune-ctl/control.sock`, mode 0600), speaking
//! [`protocol`](super::protocol). It serves what only the running daemon knows (`status`) and
//! what only it can do (`refresh`); counters and rules are read from bpffs and the state
//! directory without it. Every client is served on a task of its own: one that connects and
//! says nothing delays nobody.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::{fs::PermissionsExt as _, net::UnixStream},
    path::Path,
    time::Duration,
};

use anyhow::Context as _;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};

use super::protocol::{Answer, Request};

pub const DEFAULT_SOCKET: &str = "/run/intune-ctl/control.sock";

/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// A request with the way back to its client.
pub type Asked = (Request, oneshot::Sender<Answer>);

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

/// Accepts clients until the daemon stops; each request goes to `requests`, and its answer
/// back to the client.
pub async fn serve(listener: tokio::net::UnixListener, requests: mpsc::Sender<Asked>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "accepting on the control socket");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let requests = requests.clone();
        tokio::spawn(async move {
            if let Err(e) = answer_one(stream, requests).await {
                tracing::debug!(error = format!("{e:#}"), "a control client");
            }
        });
    }
}

async fn answer_one(
    mut stream: tokio::net::UnixStream,
    requests: mpsc::Sender<Asked>,
) -> anyhow::Result<()> {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(&mut stream);
    let read = tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await;
    let answer = match read {
        Err(_) => Answer::Error {
            error: format!("no request within {} s", REQUEST_TIMEOUT.as_secs()),
        },
        Ok(Err(e)) => return Err(e.into()),
        Ok(Ok(_)) => match serde_json::from_str::<Request>(line.trim()) {
            Err(_) => Answer::Error {
                error: format!("not a request: {:?}", line.trim()),
            },
            Ok(request) => {
                let (tx, rx) = oneshot::channel();
                requests
                    .send((request, tx))
                    .await
                    .context("the daemon is stopping")?;
                rx.await.context("the daemon dropped the request")?
            }
        },
    };
    let mut text = serde_json::to_string(&answer)?;
    text.push('\n');
    stream.write_all(text.as_bytes()).await?;
    Ok(())
}

/// Asks the daemon at `path`; `timeout` bounds the whole exchange. An error answer is an
/// error here.
pub fn ask<T: DeserializeOwned>(
    path: &Path,
    request: Request,
    timeout: Duration,
) -> anyhow::Result<T> {
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
    let value: serde_json::Value =
        serde_json::from_str(&answer).context("the daemon's answer is not JSON")?;
    if let Some(error) = value.get("error").and_then(|e| e.as_str()) {
        anyhow::bail!("the daemon refused: {error}");
    }
    serde_json::from_value(value).context("the daemon's answer is not what was asked for")
}
