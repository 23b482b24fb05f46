//! Reading one DNS response: the addresses it gives for an endpoint name. The question name,
//! and each name of the CNAME chain the answer section follows from it, is matched against the
//! patterns; the A and AAAA records at the end of the chain (from the first matching name on)
//! are learned under that name.

use std::net::IpAddr;

use hickory_proto::{
    op::{Message, MessageType, OpCode, ResponseCode},
    rr::RData,
};

use super::patterns::{Pattern, Patterns, normalize};

/// CNAME steps followed at most: real chains have two or three.
const MAX_CHAIN: usize = 16;

/// An address an answer gives for an endpoint name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Learned<'p> {
    pub address: IpAddr,
    /// The smallest TTL on the way from the matched name to the address.
    pub ttl: u32,
    /// The name the device asked for.
    pub asked: String,
    pub pattern: &'p Pattern,
}

/// Why an answer taught nothing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Unlearned {
    #[error("not a DNS message: {0}")]
    Malformed(String),
    #[error("not a response to a query")]
    NotAResponse,
    #[error("the response is an error ({0})")]
    Failed(String),
    #[error("the response has no question")]
    NoQuestion,
    /// A fine answer, for no endpoint name.
    #[error("no endpoint name in the answer")]
    NoMatch,
}

/// What an answer for an endpoint name holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reading<'p> {
    /// The addresses of the name's chain.
    pub learned: Vec<Learned<'p>>,
    /// The answer section's other addresses: the capture program, which reads no chains, may
    /// have taken them in provisionally.
    pub others: Vec<IpAddr>,
}

/// The addresses the capture program may have taken in from `message` on its own: the A and
/// AAAA records it reads the way it reads them (after a question spelled out, records whose
/// owner is a pointer, at most 16). An answer the learner does not take has them removed.
pub fn kernel_candidates(message: &[u8]) -> Vec<IpAddr> {
    let be16 = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes([
            *message.get(at)?,
            *message.get(at + 1)?,
        ]))
    };
    let mut out = Vec::new();
    let Some(count) = be16(6) else {
        return out;
    };
    let mut off = 12;
    loop {
        match message.get(off) {
            Some(0) => break,
            Some(&len) if len <= 63 => off += usize::from(len) + 1,
            _ => return out,
        }
    }
    off += 5;
    for _ in 0..usize::from(count).min(intune_common::learn::MAX_ANSWER_RECORDS) {
        if message.get(off).is_none_or(|b| b & 0xc0 != 0xc0) {
            break;
        }
        let (Some(kind), Some(rdlen)) = (be16(off + 2), be16(off + 10)) else {
            break;
        };
        let data = off + 12;
        let rdlen = usize::from(rdlen);
        match (kind, rdlen, message.get(data..data + rdlen)) {
            (1, 4, Some(d)) => out.push(IpAddr::from([d[0], d[1], d[2], d[3]])),
            (28, 16, Some(d)) => {
                let mut a = [0u8; 16];
                a.copy_from_slice(d);
                out.push(IpAddr::from(a));
            }
            _ => {}
        }
        off = data + rdlen;
    }
    out
}

/// The endpoint addresses in `message`, or why there are none.
pub fn learn<'p>(message: &[u8], patterns: &'p Patterns) -> Result<Reading<'p>, Unlearned> {
    let msg = Message::from_vec(message).map_err(|e| Unlearned::Malformed(e.to_string()))?;
    if msg.metadata.message_type != MessageType::Response || msg.metadata.op_code != OpCode::Query {
        return Err(Unlearned::NotAResponse);
    }
    if msg.metadata.response_code != ResponseCode::NoError {
        return Err(Unlearned::Failed(msg.metadata.response_code.to_string()));
    }
    let question = msg.queries.first().ok_or(Unlearned::NoQuestion)?;
    let asked = normalize(&question.name.to_ascii());
    let owner = |r: &hickory_proto::rr::Record| normalize(&r.name.to_ascii());

    // The chain from the question: (name, TTL of the CNAME that led to it).
    let mut chain: Vec<(String, u32)> = vec![(asked.clone(), u32::MAX)];
    while chain.len() <= MAX_CHAIN {
        let (current, _) = &chain[chain.len() - 1];
        let next = msg.answers.iter().find_map(|r| match &r.data {
            RData::CNAME(target) if owner(r) == *current => {
                Some((normalize(&target.0.to_ascii()), r.ttl))
            }
            _ => None,
        });
        match next {
            Some(step) if !chain.iter().any(|(n, _)| *n == step.0) => chain.push(step),
            _ => break,
        }
    }
    let Some((from, pattern)) = chain
        .iter()
        .enumerate()
        .find_map(|(i, (name, _))| patterns.find(name).map(|p| (i, p)))
    else {
        return Err(Unlearned::NoMatch);
    };
    // The CNAME TTLs after the matched name bound what the addresses may be kept for.
    let mut learned = Vec::new();
    for (i, (name, _)) in chain.iter().enumerate().skip(from) {
        let via = chain[from + 1..=i]
            .iter()
            .map(|(_, ttl)| *ttl)
            .min()
            .unwrap_or(u32::MAX);
        for r in msg.answers.iter().filter(|r| owner(r) == *name) {
            let address = match &r.data {
                RData::A(a) => IpAddr::V4(a.0),
                RData::AAAA(a) => IpAddr::V6(a.0),
                _ => continue,
            };
            learned.push(Learned {
                address,
                ttl: r.ttl.min(via),
                asked: asked.clone(),
                pattern,
            });
        }
    }
    let others = msg
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .filter(|a| !learned.iter().any(|l| l.address == *a))
        .collect();
    Ok(Reading { learned, others })
}

#[cfg(test)]
mod tests {
    use hickory_proto::{
        op::Query,
        rr::{
            Name, Record, RecordType,
            rdata::{A, AAAA, CNAME},
        },
    };

    use super::*;
    use crate::sources::endpoints::{Source, parse_endpoint_sets};

    fn patterns() -> Patterns {
        let sets = parse_endpoint_sets(
            r#"[{"id": 7, "serviceArea": "MEM", "category": "Allow", "tcpPorts": "443",
                 "urls": ["*.manage.microsoft.com", "exact.example"]}]"#,
            Source::File,
        )
        .unwrap();
        Patterns::of(&sets)
    }

    fn name(n: &str) -> Name {
        Name::from_ascii(n).unwrap()
    }

    fn response(asked: &str, answers: Vec<Record>) -> Vec<u8> {
        let mut m = Message::response(7, OpCode::Query);
        m.add_query(Query::query(name(asked), RecordType::A));
        m.add_answers(answers);
        m.to_vec().unwrap()
    }

    fn a(owner: &str, ttl: u32, addr: &str) -> Record {
        Record::from_rdata(name(owner), ttl, RData::A(A(addr.parse().unwrap())))
    }

    fn cname(owner: &str, ttl: u32, target: &str) -> Record {
        Record::from_rdata(name(owner), ttl, RData::CNAME(CNAME(name(target))))
    }

    #[test]
    fn kernel_candidates_are_the_records_the_capture_reads() {
        let msg = response(
            "x.manage.microsoft.com.",
            vec![
                cname("x.manage.microsoft.com.", 300, "edge.cdn.example."),
                a("edge.cdn.example.", 120, "198.51.100.20"),
                Record::from_rdata(
                    name("edge.cdn.example."),
                    60,
                    RData::AAAA(AAAA("2001:db8::20".parse().unwrap())),
                ),
                a("unrelated.example.", 120, "203.0.113.1"),
            ],
        );
        // The CNAME is skipped, the two records after it are read; the unrelated owner is
        // spelled out (a name met for the first time), which ends the capture's reading too.
        let got: Vec<String> = kernel_candidates(&msg)
            .iter()
            .map(std::string::ToString::to_string)
            .collect();
        assert_eq!(got, ["198.51.100.20", "2001:db8::20"]);
        // Cut anywhere: what is whole before the cut, never a panic.
        for len in 0..msg.len() {
            let _ = kernel_candidates(&msg[..len]);
        }
        assert_eq!(kernel_candidates(&msg[..40]).len(), 0);
    }

    #[test]
    fn a_cname_chain_is_learned_under_the_intune_name() {
        let p = patterns();
        let msg = response(
            "X.Manage.Microsoft.com.",
            vec![
                cname("x.manage.microsoft.com.", 300, "edge.cdn.example."),
                cname("edge.cdn.example.", 60, "node.cdn.example."),
                a("node.cdn.example.", 120, "198.51.100.20"),
                a("node.cdn.example.", 20, "198.51.100.21"),
                a("unrelated.example.", 120, "203.0.113.1"),
            ],
        );
        let reading = learn(&msg, &p).unwrap();
        assert_eq!(
            reading.others,
            ["203.0.113.1".parse::<IpAddr>().unwrap()],
            "not of the chain"
        );
        let got = reading.learned;
        let addrs: Vec<(String, u32)> =
            got.iter().map(|l| (l.address.to_string(), l.ttl)).collect();
        assert_eq!(
            addrs,
            [("198.51.100.20".into(), 60), ("198.51.100.21".into(), 20)]
        );
        assert_eq!(got[0].asked, "x.manage.microsoft.com");
        assert_eq!(&*got[0].pattern.name, "*.manage.microsoft.com");
        assert_eq!(*got[0].pattern.sets, [7]);
    }

    #[test]
    fn aaaa_and_exact_names_are_learned_and_others_are_not() {
        let p = patterns();
        let v6 = Record::from_rdata(
            name("exact.example."),
            30,
            RData::AAAA(AAAA("2001:db8::7".parse().unwrap())),
        );
        let got = learn(&response("exact.example.", vec![v6]), &p)
            .unwrap()
            .learned;
        assert_eq!(got[0].address.to_string(), "2001:db8::7");
        assert_eq!(
            learn(
                &response("other.example.", vec![a("other.example.", 30, "192.0.2.9")]),
                &p
            ),
            Err(Unlearned::NoMatch)
        );
        // A record for the Intune name in an answer to another question teaches nothing.
        let smuggled = response(
            "other.example.",
            vec![a("x.manage.microsoft.com.", 30, "192.0.2.9")],
        );
        assert_eq!(learn(&smuggled, &p), Err(Unlearned::NoMatch));
    }

    #[test]
    fn cname_loops_end() {
        let p = patterns();
        let msg = response(
            "a.manage.microsoft.com.",
            vec![
                cname("a.manage.microsoft.com.", 30, "b.example."),
                cname("b.example.", 30, "a.manage.microsoft.com."),
            ],
        );
        assert_eq!(learn(&msg, &p), Ok(Reading::default()));
    }

    #[test]
    fn queries_errors_and_garbage_are_told_apart() {
        let p = patterns();
        let mut q = Message::query();
        q.add_query(Query::query(name("x.manage.microsoft.com."), RecordType::A));
        assert_eq!(
            learn(&q.to_vec().unwrap(), &p),
            Err(Unlearned::NotAResponse)
        );
        let mut nx = Message::response(1, OpCode::Query);
        nx.metadata.response_code = ResponseCode::NXDomain;
        nx.add_query(Query::query(name("x.manage.microsoft.com."), RecordType::A));
        assert!(matches!(
            learn(&nx.to_vec().unwrap(), &p),
            Err(Unlearned::Failed(_))
        ));
        assert!(matches!(learn(&[0u8; 5], &p), Err(Unlearned::Malformed(_))));
    }

    /// Mutations of good answers and plain noise: the reader returns, never panics, and what it
    /// learns is always an address the message's answer section holds.
    #[test]
    fn mutated_and_random_messages_never_break_the_reader() {
        let p = patterns();
        let good = response(
            "x.manage.microsoft.com.",
            vec![
                cname("x.manage.microsoft.com.", 300, "edge.cdn.example."),
                a("edge.cdn.example.", 60, "198.51.100.20"),
            ],
        );
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut learned = 0;
        for round in 0..20_000 {
            let mut m = if round % 4 == 0 {
                (0..next() % 600).map(|_| next() as u8).collect()
            } else {
                good.clone()
            };
            for _ in 0..=(next() % 4) {
                if m.is_empty() {
                    break;
                }
                let at = (next() as usize) % m.len();
                match next() % 3 {
                    0 => m[at] = next() as u8,
                    1 => m.truncate(at),
                    _ => m.insert(at, next() as u8),
                }
            }
            if let Ok(reading) = learn(&m, &p) {
                let parsed = Message::from_vec(&m).unwrap();
                for l in &reading.learned {
                    let held = parsed.answers.iter().any(|r| match &r.data {
                        RData::A(x) => IpAddr::V4(x.0) == l.address,
                        RData::AAAA(x) => IpAddr::V6(x.0) == l.address,
                        _ => false,
                    });
                    assert!(held, "{:?} is not in {m:02x?}", l.address);
                    learned += 1;
                }
            }
        }
        assert!(learned > 0, "no mutation kept the answer readable");
    }
}
