//! `check --connect`: a TCP connection from the gateway itself to one address of each checked
//! name, which tells whether the path beyond the gateway is open (the filter judges the
//! devices' packets, not the gateway's own).

use std::{collections::HashSet, net::IpAddr, time::Duration};

use super::Finding;

/// The port connected to.
pub const PORT: u16 = 443;
/// How long a connection may take before it counts as unanswered.
const WITHIN: Duration = Duration::from_secs(3);

/// Connects to the first address of every (set, name) that has one, and notes the result on
/// that finding (the one on port 443 when there is one).
pub async fn connect_all(findings: &mut [Finding]) {
    let mut done: HashSet<(u32, String)> = HashSet::new();
    for i in 0..findings.len() {
        let (Some(name), Some(address)) = (findings[i].name.clone(), findings[i].address) else {
            continue;
        };
        let key = (findings[i].set, name);
        if done.contains(&key) {
            continue;
        }
        done.insert(key.clone());
        let on_443 = (i..findings.len()).find(|&j| {
            findings[j].set == key.0
                && findings[j].name.as_ref() == Some(&key.1)
                && findings[j].address == Some(address)
                && findings[j].port == Some(PORT)
        });
        findings[on_443.unwrap_or(i)].connect = Some(tcp(address).await);
    }
}

/// What a TCP connection to `address` on 443 did, in a few words.
pub async fn tcp(address: IpAddr) -> String {
    match tokio::time::timeout(WITHIN, tokio::net::TcpStream::connect((address, PORT))).await {
        Ok(Ok(_)) => "connected".into(),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => "refused".into(),
        Ok(Err(e)) => format!("failed: {e}"),
        Err(_) => format!("no answer within {} s", WITHIN.as_secs()),
    }
}
