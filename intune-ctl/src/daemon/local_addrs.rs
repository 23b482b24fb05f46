//! The gateway's own interface addresses, followed from netlink: traffic to them is the
//! gateway's business (SSH, SNMP, its own DNS and DHCP service, replies to its own
//! connections), not the filter's. Every address change on any interface brings a fresh dump,
//! so a missed or reordered event cannot leave the set wrong.

use std::{net::IpAddr, time::Duration};

use futures_util::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::{
    constants::{RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR},
    packet_route::address::{AddressAttribute, AddressMessage},
};
use tokio::sync::mpsc;

use super::netlink_follow::{self, FollowError, Seen};

/// Changes closer together than this come as one dump (a DHCP renewal, an interface coming up
/// with several addresses).
const SETTLE: Duration = Duration::from_millis(50);

/// Every address of every interface, now.
pub async fn current() -> Result<Vec<IpNet>, FollowError> {
    netlink_follow::once(dump).await
}

async fn dump(handle: rtnetlink::Handle) -> Result<Vec<IpNet>, rtnetlink::Error> {
    let mut out: Vec<IpNet> = handle
        .address()
        .get()
        .execute()
        .map_ok(|m| address_of(&m))
        .try_collect::<Vec<_>>()
        .await?
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

/// Sends the full set of addresses at once and after every change, until `tx` closes.
pub async fn follow(tx: mpsc::Sender<Seen<Vec<IpNet>>>) {
    netlink_follow::follow(
        "the gateway's addresses",
        RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR,
        SETTLE,
        dump,
        tx,
    )
    .await;
}
