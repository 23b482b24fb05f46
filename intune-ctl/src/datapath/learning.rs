//! Turning on learning from DNS answers: the capture program on the interfaces' egress, the
//! maps handed to the learner, the decision told to consult learned addresses.

use aya::{
    maps::{HashMap, Map, MapData, PerCpuArray, RingBuf},
    programs::{SchedClassifier, TcAttachType},
};
use intune_common::{
    learn::{DNS_EVENTS, LEARNED},
    maps::RULE_STATS,
};

use super::{Datapath, DatapathError, pins::Pins, sync::map_err};
use crate::learn::learner::Maps;

pub const CAPTURE_PROGRAM: &str = "intune_dns";

impl Datapath {
    /// Attaches the DNS capture to the egress of `ifaces` (for as long as this process
    /// lives: nobody learns once the daemon is gone) and hands over the maps the learner
    /// works on. Call after the lookup maps are pinned: the `LEARNED` map leaves this handle.
    pub fn start_learning(
        &mut self,
        ifaces: &[String],
        pins: &Pins,
    ) -> Result<Maps, DatapathError> {
        let prog: &mut SchedClassifier = self
            .ebpf
            .program_mut(CAPTURE_PROGRAM)
            .ok_or(DatapathError::Missing("DNS capture program"))?
            .try_into()?;
        prog.load()?;
        for iface in ifaces {
            prog.attach(iface, TcAttachType::Egress)
                .map_err(|source| DatapathError::Attach {
                    iface: iface.clone(),
                    mode: "TC egress",
                    source,
                })?;
        }
        let mut take =
            |name: &'static str| self.ebpf.take_map(name).ok_or(DatapathError::Missing(name));
        let events = RingBuf::try_from(take(DNS_EVENTS)?).map_err(map_err(DNS_EVENTS))?;
        let learned = HashMap::try_from(take(LEARNED)?).map_err(map_err(LEARNED))?;
        let stats = MapData::from_pin(pins.map(RULE_STATS)).map_err(map_err(RULE_STATS))?;
        let rule_stats =
            PerCpuArray::try_from(Map::PerCpuArray(stats)).map_err(map_err(RULE_STATS))?;
        self.learning = true;
        if let Some(config) = self.installed.as_ref().map(|r| self.config_for(r)) {
            self.write_config(config)?;
        }
        Ok(Maps {
            events,
            learned,
            rule_stats,
        })
    }

    /// The rule index of the first learned address's counter.
    pub fn learned_rule_base(&self) -> u32 {
        self.capacity.rules
    }
}
