//! The service tags task (tags from a URL): owns the poller, downloads at most daily (and when
//! an admin asks), and hands each accepted selection's endpoint sets to the datapath owner. A
//! failed or rejected download is reported, and the selection in force stays.

use std::time::Instant;

use tokio::sync::mpsc;

use crate::sources::{
    endpoints::EndpointSet,
    tags_file::{RETRY_AFTER, TagsPoller},
};

pub enum TagsCmd {
    /// An admin's `refresh`: download now.
    Now,
    /// A reload changed `[sources] service_tags`: this poller (or none) from now on.
    Replace(Option<Box<TagsPoller>>),
}

/// What a download came to: the sets to use, or why the ones in force stay.
pub type TagsEvent = Result<Vec<EndpointSet>, String>;

pub struct TagsTask {
    poller: Option<Box<TagsPoller>>,
    next: Instant,
    out: mpsc::Sender<TagsEvent>,
}

impl TagsTask {
    pub fn new(poller: Option<TagsPoller>, out: mpsc::Sender<TagsEvent>) -> TagsTask {
        let next = poller
            .as_ref()
            .map_or_else(Instant::now, TagsPoller::next_due);
        TagsTask {
            poller: poller.map(Box::new),
            next,
            out,
        }
    }

    pub async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<TagsCmd>) {
        loop {
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    None => return,
                    Some(TagsCmd::Now) => self.next = Instant::now(),
                    Some(TagsCmd::Replace(poller)) => {
                        self.next = poller.as_ref().map_or_else(Instant::now, |p| p.next_due());
                        self.poller = poller;
                    }
                },
                () = tokio::time::sleep_until(self.next.into()), if self.poller.is_some() => {
                    let Some(poller) = &self.poller else { continue };
                    let event = match poller.poll().await {
                        Ok(sets) => {
                            self.next = poller.next_due();
                            Ok(sets)
                        }
                        Err(e) => {
                            self.next = Instant::now() + RETRY_AFTER;
                            Err(format!("{e:#}; the service tags taken before stay"))
                        }
                    };
                    if self.out.send(event).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}
