//! The gateway's interfaces, followed from netlink: every name with its ifindex, at once and
//! after every link event (created, deleted, renamed, up or down), so the owner can attach to
//! a configured interface the moment it appears, before it is brought up.

use std::collections::BTreeMap;

use futures_util::TryStreamExt;
use rtnetlink::{constants::RTMGRP_LINK, packet_route::link::LinkAttribute};
use tokio::sync::mpsc;

use super::netlink_follow::{self, FollowError, Seen};

/// Each interface's name and ifindex.
pub type LinkTable = BTreeMap<String, u32>;

/// Every interface now.
pub async fn current() -> Result<LinkTable, FollowError> {
    netlink_follow::once(dump).await
}

async fn dump(handle: rtnetlink::Handle) -> Result<LinkTable, rtnetlink::Error> {
    handle
        .link()
        .get()
        .execute()
        .try_filter_map(|m| async move {
            Ok(m.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(name) => Some((name.clone(), m.header.index)),
                _ => None,
            }))
        })
        .try_collect()
        .await
}

/// Sends the link table at once and after every link event, until `tx` closes. No settling:
/// the attach waits on this.
pub async fn follow(tx: mpsc::Sender<Seen<LinkTable>>) {
    netlink_follow::follow(
        "the gateway's interfaces",
        RTMGRP_LINK,
        std::time::Duration::ZERO,
        dump,
        tx,
    )
    .await;
}
