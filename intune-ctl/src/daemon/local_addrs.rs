//! The gateway's own interface addresses, followed from netlink: traffic to them is the
//! gateway's business (SSH, SNMP, its own DNS and DHCP service, replies to its own
//! connections), not the filter's. Every address change on any interface brings a fresh dump,
//! so a missed or reordered event cannot leave the set wrong.

use std::{net::IpAddr, time::Duration};

use futures_util::{StreamExt, TryStreamExt};
use ipnet::IpNet;
use rtnetlink::{
    constants::{RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR},
    packet_route::address::{AddressAttribute, AddressMessage},
    sys::{AsyncSocket, SocketAddr},
};
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error)]
pub enum LocalAddrsError {
    #[error("opening a netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("subscribing to address changes: {0}")]
    Subscribe(std::io::Error),
    #[error("listing the interface addresses: {0}")]
    Dump(rtnetlink::Error),
}

/// Changes closer together than this come as one dump (a DHCP renewal, an interface coming up
/// with several addresses).
const SETTLE: Duration = Duration::from_millis(50);
/// How long the follower waits before opening a new socket after one failed.
const RETRY: Duration = Duration::from_secs(5);

/// Every address of every interface, now.
pub async fn current() -> Result<Vec<IpNet>, LocalAddrsError> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(LocalAddrsError::Socket)?;
    let task = tokio::spawn(connection);
    let result = dump(&handle).await;
    task.abort();
    result
}

async fn dump(handle: &rtnetlink::Handle) -> Result<Vec<IpNet>, LocalAddrsError> {
    let mut out: Vec<IpNet> = handle
        .address()
        .get()
        .execute()
        .map_ok(|m| address_of(&m))
        .try_collect::<Vec<_>>()
        .await
        .map_err(LocalAddrsError::Dump)?
        .into_iter()
        .flatten()
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// The interface's own address with its prefix: IFA_LOCAL where there is one (on a
/// point-to-point link such as PPPoE, IFA_ADDRESS is the peer's), else IFA_ADDRESS.
fn address_of(m: &AddressMessage) -> Option<IpNet> {
    let find = |want_local: bool| {
        m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(ip) if want_local => Some(*ip),
            AddressAttribute::Address(ip) if !want_local => Some(*ip),
            _ => None,
        })
    };
    let ip: IpAddr = find(true).or_else(|| find(false))?;
    IpNet::new(ip, m.header.prefix_len).ok()
}

/// Sends the full set of addresses at once and after every change, until `tx` closes. A
/// netlink failure is logged and the socket opened again: the last set sent stays in force.
pub async fn follow(tx: mpsc::Sender<Vec<IpNet>>) {
    loop {
        match follow_once(&tx).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "following the gateway's addresses; trying again in 5 s");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

async fn follow_once(tx: &mpsc::Sender<Vec<IpNet>>) -> Result<(), LocalAddrsError> {
    let (mut connection, handle, mut events) =
        rtnetlink::new_connection().map_err(LocalAddrsError::Socket)?;
    connection
        .socket_mut()
        .socket_mut()
        .bind(&SocketAddr::new(0, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
        .map_err(LocalAddrsError::Subscribe)?;
    let task = tokio::spawn(connection);
    // Subscribed before the first dump: a change between the two brings another dump.
    let result = async {
        let mut last = None;
        loop {
            let now = dump(&handle).await?;
            if last.as_ref() != Some(&now) {
                if tx.send(now.clone()).await.is_err() {
                    return Ok(());
                }
                last = Some(now);
            }
            if events.next().await.is_none() {
                return Err(LocalAddrsError::Subscribe(std::io::Error::other(
                    "the netlink socket closed",
                )));
            }
            tokio::time::sleep(SETTLE).await;
            while let Ok(Some(_)) = tokio::time::timeout(Duration::ZERO, events.next()).await {}
        }
    }
    .await;
    task.abort();
    result
}
