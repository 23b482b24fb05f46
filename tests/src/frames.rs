//! Frames built byte by byte, with every field a test may want to get wrong.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Clone, Debug)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    /// ICMP under IPv4, ICMPv6 under IPv6.
    Icmp {
        ty: u8,
    },
    /// An ICMP (ICMPv6) error quoting the IP packet of a frame, cut to `quote` bytes.
    IcmpError {
        ty: u8,
        quoted: Box<Frame>,
        quote: usize,
    },
    /// Any other protocol number, with no header.
    Other(u8),
}

#[derive(Clone, Copy, Debug)]
pub enum Ext {
    HopByHop,
    Routing,
    DestOpts,
    Ah,
    Fragment { offset: u16 },
}

#[derive(Clone, Debug)]
pub struct Frame {
    /// VLAN tag protocol ids, outermost first (0x8100, 0x88a8).
    pub vlans: Vec<u16>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub l4: L4,
    pub payload: usize,
    /// IPv4 option words (IHL = 5 + this).
    pub v4_option_words: u8,
    /// IPv4 fragment offset in 8-byte units, and more-fragments.
    pub v4_frag_offset: u16,
    pub v4_more_fragments: bool,
    pub v6_ext: Vec<Ext>,
    /// Bytes to send as they are, whatever the fields say (frames that are not IP).
    pub raw: Option<Vec<u8>>,
}

impl Frame {
    pub fn new(src: IpAddr, dst: IpAddr, l4: L4) -> Frame {
        Frame {
            vlans: Vec::new(),
            src,
            dst,
            l4,
            payload: 0,
            v4_option_words: 0,
            v4_frag_offset: 0,
            v4_more_fragments: false,
            v6_ext: Vec::new(),
            raw: None,
        }
    }

    /// A frame of exactly these bytes.
    pub fn raw(bytes: Vec<u8>) -> Frame {
        Frame {
            raw: Some(bytes),
            ..Frame::new(
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                L4::Other(0),
            )
        }
    }

    pub fn tcp(src: &str, dst: &str, sport: u16, dport: u16) -> Frame {
        Frame::new(ip(src), ip(dst), L4::Tcp { sport, dport })
    }

    pub fn udp(src: &str, dst: &str, sport: u16, dport: u16) -> Frame {
        Frame::new(ip(src), ip(dst), L4::Udp { sport, dport })
    }

    pub fn icmp(src: &str, dst: &str, ty: u8) -> Frame {
        Frame::new(ip(src), ip(dst), L4::Icmp { ty })
    }

    /// An ICMP error of type `ty` quoting `quoted`'s IP header and the first 8 bytes after it,
    /// as routers do.
    pub fn icmp_error(src: &str, dst: &str, ty: u8, quoted: Frame) -> Frame {
        let quote = quoted.ip_header_len() + 8;
        Frame::new(
            ip(src),
            ip(dst),
            L4::IcmpError {
                ty,
                quoted: Box::new(quoted),
                quote,
            },
        )
    }

    /// Bytes of the IP header (with IPv6 extension headers).
    pub fn ip_header_len(&self) -> usize {
        if self.src.is_ipv6() {
            40 + 16
                * self
                    .v6_ext
                    .iter()
                    .filter(|e| !matches!(e, Ext::Fragment { .. }))
                    .count()
                + 8 * self
                    .v6_ext
                    .iter()
                    .filter(|e| matches!(e, Ext::Fragment { .. }))
                    .count()
        } else {
            20 + 4 * usize::from(self.v4_option_words)
        }
    }

    /// The IP packet: the frame without its Ethernet header and tags.
    pub fn ip_bytes(&self) -> Vec<u8> {
        self.bytes()[14 + 4 * self.vlans.len()..].to_vec()
    }

    pub fn vlan(mut self, tpid: u16) -> Frame {
        self.vlans.push(tpid);
        self
    }

    pub fn ext(mut self, ext: Ext) -> Frame {
        self.v6_ext.push(ext);
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        if let Some(raw) = &self.raw {
            return raw.clone();
        }
        let v6 = self.src.is_ipv6();
        let (proto, mut l4) = match self.l4 {
            L4::Tcp { sport, dport } => {
                let mut h = vec![0u8; 20];
                h[0..2].copy_from_slice(&sport.to_be_bytes());
                h[2..4].copy_from_slice(&dport.to_be_bytes());
                h[12] = 5 << 4;
                h[13] = 0x02; // SYN
                (6, h)
            }
            L4::Udp { sport, dport } => {
                let mut h = vec![0u8; 8];
                h[0..2].copy_from_slice(&sport.to_be_bytes());
                h[2..4].copy_from_slice(&dport.to_be_bytes());
                h[4..6].copy_from_slice(&((8 + self.payload) as u16).to_be_bytes());
                (17, h)
            }
            L4::Icmp { ty } => (if v6 { 58 } else { 1 }, vec![ty, 0, 0, 0, 0, 0, 0, 0]),
            L4::IcmpError {
                ty,
                ref quoted,
                quote,
            } => {
                let mut h = vec![ty, 0, 0, 0, 0, 0, 0, 0];
                let inner = quoted.ip_bytes();
                h.extend_from_slice(&inner[..quote.min(inner.len())]);
                (if v6 { 58 } else { 1 }, h)
            }
            L4::Other(p) => (p, Vec::new()),
        };
        l4.resize(l4.len() + self.payload, 0xab);
        let (ethertype, ip) = match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => (0x0800u16, self.ipv4(s, d, proto, &l4)),
            (IpAddr::V6(s), IpAddr::V6(d)) => (0x86dd, self.ipv6(s, d, proto, &l4)),
            _ => panic!("mixed address families"),
        };
        let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
        for (i, tpid) in self.vlans.iter().enumerate() {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&(100 + i as u16).to_be_bytes());
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(&ip);
        f
    }

    fn ipv4(&self, s: Ipv4Addr, d: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
        let hlen = 20 + 4 * usize::from(self.v4_option_words);
        let mut h = vec![0u8; hlen];
        h[0] = 0x40 | (5 + self.v4_option_words);
        h[2..4].copy_from_slice(&((hlen + l4.len()) as u16).to_be_bytes());
        let frag = self.v4_frag_offset | if self.v4_more_fragments { 0x2000 } else { 0 };
        h[6..8].copy_from_slice(&frag.to_be_bytes());
        h[8] = 64;
        h[9] = proto;
        h[12..16].copy_from_slice(&s.octets());
        h[16..20].copy_from_slice(&d.octets());
        for b in &mut h[20..] {
            *b = 1; // NOP options
        }
        h.extend_from_slice(l4);
        h
    }

    fn ipv6(&self, s: Ipv6Addr, d: Ipv6Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut exts = Vec::new();
        for (i, ext) in self.v6_ext.iter().enumerate() {
            let next = match self.v6_ext.get(i + 1) {
                Some(e) => ext_kind(*e),
                None => proto,
            };
            match ext {
                Ext::Fragment { offset } => {
                    let off = offset << 3;
                    exts.extend_from_slice(&[next, 0]);
                    exts.extend_from_slice(&off.to_be_bytes());
                    exts.extend_from_slice(&[0, 0, 0, 1]);
                }
                Ext::Ah => {
                    // 16 bytes: length field (16 / 4) - 2 = 2.
                    exts.extend_from_slice(&[next, 2]);
                    exts.extend_from_slice(&[0; 14]);
                }
                _ => {
                    // 16 bytes: length field (16 / 8) - 1 = 1.
                    exts.extend_from_slice(&[next, 1]);
                    exts.extend_from_slice(&[0; 14]);
                }
            }
        }
        let first = self.v6_ext.first().map_or(proto, |e| ext_kind(*e));
        let mut h = vec![0u8; 40];
        h[0] = 0x60;
        h[4..6].copy_from_slice(&((exts.len() + l4.len()) as u16).to_be_bytes());
        h[6] = first;
        h[7] = 64;
        h[8..24].copy_from_slice(&s.octets());
        h[24..40].copy_from_slice(&d.octets());
        h.extend_from_slice(&exts);
        h.extend_from_slice(l4);
        h
    }
}

fn ext_kind(e: Ext) -> u8 {
    match e {
        Ext::HopByHop => 0,
        Ext::Routing => 43,
        Ext::DestOpts => 60,
        Ext::Ah => 51,
        Ext::Fragment { .. } => 44,
    }
}

pub fn ip(s: &str) -> IpAddr {
    s.parse()
        .unwrap_or_else(|_| panic!("{s:?} is not an address"))
}

/// A non-IP frame (ARP request), padded to the Ethernet minimum.
pub fn arp() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x08, 0x06]);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f.resize(60, 0);
    f
}
