//! Following a netlink table (the gateway's addresses, its links): subscribed to the table's
//! groups, then a full dump at once and after every burst of events, sent when it differs
//! from the last one sent. A dump after each event, not the event itself: a missed or
//! reordered event cannot leave what was sent wrong.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use rtnetlink::sys::{AsyncSocket, SocketAddr};
use tokio::sync::mpsc;

/// How long the follower waits before opening a new socket after one failed.
const RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("opening a netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("subscribing to netlink events: {0}")]
    Subscribe(std::io::Error),
    #[error("dumping the table: {0}")]
    Dump(rtnetlink::Error),
}

/// A dump, and when the event that brought it arrived (the subscription, for the first).
#[derive(Clone, Debug)]
pub struct Seen<T> {
    pub value: T,
    pub at: Instant,
}

/// Sends `dump`'s result at once and after every change of the netlink `groups`, until `tx`
/// closes; events closer together than `settle` come as one dump. A netlink failure is logged
/// (as following `what`) and the socket opened again: the last result sent stays in force.
pub async fn follow<T, F, Fut>(
    what: &'static str,
    groups: u32,
    settle: Duration,
    dump: F,
    tx: mpsc::Sender<Seen<T>>,
) where
    T: PartialEq + Clone,
    F: Fn(rtnetlink::Handle) -> Fut,
    Fut: Future<Output = Result<T, rtnetlink::Error>>,
{
    loop {
        match follow_once(groups, settle, &dump, &tx).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "following {what}; trying again in 5 s");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

async fn follow_once<T, F, Fut>(
    groups: u32,
    settle: Duration,
    dump: &F,
    tx: &mpsc::Sender<Seen<T>>,
) -> Result<(), FollowError>
where
    T: PartialEq + Clone,
    F: Fn(rtnetlink::Handle) -> Fut,
    Fut: Future<Output = Result<T, rtnetlink::Error>>,
{
    let (mut connection, handle, mut events) =
        rtnetlink::new_connection().map_err(FollowError::Socket)?;
    connection
        .socket_mut()
        .socket_mut()
        .bind(&SocketAddr::new(0, groups))
        .map_err(FollowError::Subscribe)?;
    let task = tokio::spawn(connection);
    // Subscribed before the first dump: a change between the two brings another dump.
    let result = async {
        let mut last = None;
        let mut at = Instant::now();
        loop {
            let now = dump(handle.clone()).await.map_err(FollowError::Dump)?;
            if last.as_ref() != Some(&now) {
                let seen = Seen {
                    value: now.clone(),
                    at,
                };
                if tx.send(seen).await.is_err() {
                    return Ok(());
                }
                last = Some(now);
            }
            if events.next().await.is_none() {
                return Err(FollowError::Subscribe(std::io::Error::other(
                    "the netlink socket closed",
                )));
            }
            at = Instant::now();
            if !settle.is_zero() {
                tokio::time::sleep(settle).await;
            }
            while let Ok(Some(_)) = tokio::time::timeout(Duration::ZERO, events.next()).await {}
        }
    }
    .await;
    task.abort();
    result
}

/// One dump, on a connection of its own.
pub async fn once<T, F, Fut>(dump: F) -> Result<T, FollowError>
where
    F: FnOnce(rtnetlink::Handle) -> Fut,
    Fut: Future<Output = Result<T, rtnetlink::Error>>,
{
    let (connection, handle, _) = rtnetlink::new_connection().map_err(FollowError::Socket)?;
    let task = tokio::spawn(connection);
    let result = dump(handle).await.map_err(FollowError::Dump);
    task.abort();
    result
}
