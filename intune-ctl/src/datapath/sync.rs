//! Writing a rule set and policy into the program's maps.

use aya::maps::{Array, HashMap, LpmTrie, Map, MapError, lpm_trie::Key};
use intune_common::maps::{
    CONFIG, Config, DNS_RESOLVERS, IFACE_DIRECTION, LPM_V4, LPM_V6, PORT_SETS, PortSet, RuleRef,
    V4_TBL16, V4_TBL24, V4_TBL32,
};
use ipnet::IpNet;

use super::{Datapath, DatapathError, V4Lookup};
use crate::{policy::Policy, rules::RuleSet, v4table::V4Table};

pub(super) fn map_err(name: &'static str) -> impl Fn(MapError) -> DatapathError {
    move |source| DatapathError::Map { name, source }
}

impl Datapath {
    fn map_mut(&mut self, name: &'static str) -> Result<&mut Map, DatapathError> {
        self.ebpf.map_mut(name).ok_or(DatapathError::Missing(name))
    }

    /// Fills freshly loaded maps with `rules` and `policy`. `trace` makes the program record its
    /// last decision (for test runs; never on an attached program).
    pub fn install(
        &mut self,
        rules: &RuleSet,
        policy: &Policy,
        trace: bool,
    ) -> Result<(), DatapathError> {
        self.write_port_sets(&rules.port_set_bitmaps())?;
        let mut v4 = LpmTrie::<_, [u8; 4], RuleRef>::try_from(self.map_mut(LPM_V4)?)
            .map_err(map_err(LPM_V4))?;
        for (net, value) in rules.lpm_entries() {
            if let IpNet::V4(n) = net {
                v4.insert(
                    &Key::new(u32::from(n.prefix_len()), n.network().octets()),
                    value,
                    0,
                )
                .map_err(map_err(LPM_V4))?;
            }
        }
        let mut v6 = LpmTrie::<_, [u8; 16], RuleRef>::try_from(self.map_mut(LPM_V6)?)
            .map_err(map_err(LPM_V6))?;
        for (net, value) in rules.lpm_entries() {
            if let IpNet::V6(n) = net {
                v6.insert(
                    &Key::new(u32::from(n.prefix_len()), n.network().octets()),
                    value,
                    0,
                )
                .map_err(map_err(LPM_V6))?;
            }
        }
        self.v4_lookup = match V4Table::compile(rules, self.capacity.v4_table_chunks as usize) {
            Some(table) => {
                self.write_v4_table(&table)?;
                V4Lookup::Table
            }
            None => {
                tracing::info!(
                    chunks = self.capacity.v4_table_chunks,
                    "the IPv4 prefixes do not fit the lookup table; IPv4 uses the LPM trie"
                );
                V4Lookup::Trie
            }
        };
        self.write_policy(rules, policy, trace)
    }

    /// Writes the table's non-empty entries (the maps start zeroed), lower levels first so a
    /// first-level entry never points at a chunk not yet written.
    fn write_v4_table(&mut self, t: &V4Table) -> Result<(), DatapathError> {
        for (name, entries) in [
            (V4_TBL32, &t.tbl32),
            (V4_TBL24, &t.tbl24),
            (V4_TBL16, &t.tbl16),
        ] {
            let mut array = self.map_u32_array(name)?;
            for (i, &e) in entries.iter().enumerate().filter(|(_, e)| **e != 0) {
                array.set(i, e);
            }
        }
        Ok(())
    }

    fn write_port_sets(&mut self, sets: &[PortSet]) -> Result<(), DatapathError> {
        let mut array =
            Array::<_, PortSet>::try_from(self.map_mut(PORT_SETS)?).map_err(map_err(PORT_SETS))?;
        for (i, set) in sets.iter().enumerate() {
            array.set(i as u32, set, 0).map_err(map_err(PORT_SETS))?;
        }
        Ok(())
    }

    /// Writes the resolvers, interface directions and, last, the config the program acts on.
    pub fn write_policy(
        &mut self,
        rules: &RuleSet,
        policy: &Policy,
        trace: bool,
    ) -> Result<(), DatapathError> {
        let mut resolvers = HashMap::<_, [u8; 16], u8>::try_from(self.map_mut(DNS_RESOLVERS)?)
            .map_err(map_err(DNS_RESOLVERS))?;
        for key in policy.dns_resolver_keys() {
            resolvers
                .insert(key, 1, 0)
                .map_err(map_err(DNS_RESOLVERS))?;
        }
        let mut ifaces = HashMap::<_, u32, u32>::try_from(self.map_mut(IFACE_DIRECTION)?)
            .map_err(map_err(IFACE_DIRECTION))?;
        for (ifindex, dir) in &policy.iface_directions {
            ifaces
                .insert(ifindex, dir.bits(), 0)
                .map_err(map_err(IFACE_DIRECTION))?;
        }
        let mut config = policy.config(rules, trace);
        if self.v4_lookup == V4Lookup::Trie {
            config.flags |= Config::FLAG_V4_TRIE;
        }
        self.write_config(config)
    }

    pub fn write_config(&mut self, config: Config) -> Result<(), DatapathError> {
        let mut array =
            Array::<_, Config>::try_from(self.map_mut(CONFIG)?).map_err(map_err(CONFIG))?;
        array.set(0, config, 0).map_err(map_err(CONFIG))
    }

    pub fn config(&self) -> Result<Config, DatapathError> {
        let map = self
            .ebpf
            .map(CONFIG)
            .ok_or(DatapathError::Missing(CONFIG))?;
        let array = Array::<_, Config>::try_from(map).map_err(map_err(CONFIG))?;
        array.get(&0, 0).map_err(map_err(CONFIG))
    }
}
