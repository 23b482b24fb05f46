//! Reading Ethernet frames from pcap and pcapng captures.

use std::{
    fs::File,
    io::{BufReader, Read},
    path::Path,
};

use pcap_file::{
    DataLink,
    pcap::PcapReader,
    pcapng::{Block, PcapNgReader},
};

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot read capture {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("capture {path}: {message}")]
    Format { path: String, message: String },
}

const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// Every frame of a pcap or pcapng capture whose link type is Ethernet.
pub fn read_frames(path: &Path) -> Result<Vec<Vec<u8>>, CaptureError> {
    let shown = path.display().to_string();
    let io = |source| CaptureError::Io {
        path: shown.clone(),
        source,
    };
    let format = |message: String| CaptureError::Format {
        path: shown.clone(),
        message,
    };
    let mut file = BufReader::new(File::open(path).map_err(io)?);
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic)
        .map_err(|_| format("too short to be a pcap or pcapng capture".into()))?;
    let file = BufReader::new(File::open(path).map_err(io)?);
    let not_ethernet = |link: DataLink| format(format!("link type {link:?} is not Ethernet"));
    let mut frames = Vec::new();
    if magic == PCAPNG_MAGIC {
        let mut reader = PcapNgReader::new(file).map_err(|e| format(e.to_string()))?;
        while let Some(block) = reader.next_block() {
            match block.map_err(|e| format(e.to_string()))? {
                Block::InterfaceDescription(idb) if idb.linktype != DataLink::ETHERNET => {
                    return Err(not_ethernet(idb.linktype));
                }
                Block::EnhancedPacket(p) => frames.push(p.data.into_owned()),
                Block::SimplePacket(p) => frames.push(p.data.into_owned()),
                _ => {}
            }
        }
    } else {
        let mut reader = PcapReader::new(file)
            .map_err(|e| format(format!("not a pcap or pcapng capture ({e})")))?;
        let link = reader.header().datalink;
        if link != DataLink::ETHERNET {
            return Err(not_ethernet(link));
        }
        while let Some(packet) = reader.next_packet() {
            frames.push(packet.map_err(|e| format(e.to_string()))?.data.into_owned());
        }
    }
    Ok(frames)
}
