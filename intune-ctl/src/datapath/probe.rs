//! Asking the running filter about one packet: a copy of the program, loaded against the
//! lookup maps the daemon pinned and with counters of its own (the live counts stay true),
//! runs a synthesized frame with BPF_PROG_TEST_RUN; its counters tell the outcome and rule.

use std::net::IpAddr;

use aya::{
    EbpfLoader,
    maps::{Array, Map, MapData},
    programs::{TestRun, TestRunOptions},
};
use intune_common::{
    maps::{CONFIG, CONFIG_SYMBOL, Config, OUTCOME_STATS, RULE_STATS},
    outcome::Outcome,
};

use super::{
    Capacity, Datapath, DatapathError,
    pins::{LOOKUP_MAPS, Pins},
    sync::map_err,
};

/// What the filter does with a packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// XDP_PASS (2) or XDP_DROP (1).
    pub action: u32,
    pub outcome: Outcome,
    /// The rule credited, when one matched.
    pub rule: Option<u32>,
}

/// A program copy wired to the pinned lookup maps.
pub struct Probe {
    dp: Datapath,
}

impl Probe {
    pub fn open(pins: &Pins) -> Result<Probe, DatapathError> {
        let rules = MapData::from_pin(pins.map(RULE_STATS))
            .and_then(|m| m.info().map(|i| i.max_entries()))
            .map_err(map_err(RULE_STATS))?;
        let paths: Vec<(&str, std::path::PathBuf)> =
            LOOKUP_MAPS.iter().map(|m| (*m, pins.map(m))).collect();
        for (name, path) in &paths {
            if !path.exists() {
                return Err(DatapathError::Missing(name));
            }
        }
        // The settings are the copy's own global, set to the live ones before load: re-using
        // the pinned map would have the load write its initial zeros over the live filter's.
        let config = pinned_config(pins)?;
        let mut loader = EbpfLoader::new();
        loader.override_global(CONFIG_SYMBOL, &config, true);
        for (name, path) in &paths {
            loader.map_pin_path(name, path.as_path());
        }
        let capacity = Capacity {
            rules,
            ..Capacity::default()
        };
        let dp = Datapath::load_with(&mut loader, capacity)?;
        Ok(Probe { dp })
    }

    /// Runs `frame` once; the counters it moved say what happened. One probe answers any
    /// number of questions: each is told by what its run added to the probe's own counters.
    pub fn run(&self, frame: &[u8], candidates: &[u32]) -> Result<Verdict, DatapathError> {
        let outcomes_before = self.dp.outcome_counters()?;
        let rules_before = self.dp.rule_counters_of(candidates.iter().copied())?;
        let result = self
            .dp
            .program()?
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ..TestRunOptions::new()
            })
            .map_err(DatapathError::Program)?;
        let outcome = self
            .dp
            .outcome_counters()?
            .into_iter()
            .zip(outcomes_before)
            .find(|((_, after), (_, before))| after.packets > before.packets)
            .map(|((o, _), _)| o)
            .ok_or(DatapathError::Missing(OUTCOME_STATS))?;
        let rules_after = self.dp.rule_counters_of(candidates.iter().copied())?;
        let rule = candidates
            .iter()
            .zip(rules_after.iter().zip(&rules_before))
            .find(|(_, (after, before))| after.packets > before.packets)
            .map(|(i, _)| *i);
        Ok(Verdict {
            action: result.return_value,
            outcome,
            rule,
        })
    }

    /// The live filter's settings (mode, direction), from its pinned map.
    pub fn config(&self) -> Result<intune_common::maps::Config, DatapathError> {
        self.dp.config()
    }
}

/// The live filter's settings, from their pinned map.
fn pinned_config(pins: &Pins) -> Result<Config, DatapathError> {
    let map = MapData::from_pin(pins.map(CONFIG)).map_err(map_err(CONFIG))?;
    let array = Array::<_, Config>::try_from(Map::Array(map)).map_err(map_err(CONFIG))?;
    array.get(&0, 0).map_err(map_err(CONFIG))
}

/// The other end of a synthesized packet: a documentation address of the same family.
pub fn device_like(like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::from([192, 0, 2, 1]),
        IpAddr::V6(_) => IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]),
    }
}

/// An Ethernet frame carrying TCP or UDP from `src:sport` to `dst:dport`: just what the
/// program reads (addresses, protocol, ports), lengths consistent, no checksums.
pub fn frame(src: IpAddr, dst: IpAddr, udp: bool, sport: u16, dport: u16) -> Vec<u8> {
    let l4_len = if udp { 8 } else { 20 };
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    let proto = if udp { 17 } else { 6 };
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend([0x08, 0x00, 0x45, 0]);
            f.extend((20u16 + l4_len).to_be_bytes());
            f.extend([0, 0, 0x40, 0, 64, proto, 0, 0]);
            f.extend(s.octets());
            f.extend(d.octets());
        }
        (s, d) => {
            let to6 = |a: IpAddr| match a {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            f.extend([0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend(l4_len.to_be_bytes());
            f.extend([proto, 64]);
            f.extend(to6(s).octets());
            f.extend(to6(d).octets());
        }
    }
    f.extend(sport.to_be_bytes());
    f.extend(dport.to_be_bytes());
    if udp {
        f.extend(l4_len.to_be_bytes());
        f.extend([0, 0]);
    } else {
        f.extend([0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    }
    f
}
