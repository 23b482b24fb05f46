//! Writing a rule set and policy into the program's maps.

use aya::maps::{Array, HashMap, LpmTrie, Map, MapError, lpm_trie::Key};
use intune_common::maps::{CONFIG, Config, DNS_RESOLVERS, IFACE_DIRECTION, LPM_V4, LPM_V6, PORT_SETS, PortSet, RuleRef};
use ipnet::IpNet;

use super::{Datapath, DatapathError};
use crate::{policy::Policy, rules::RuleSet};

pub(super) fn map_err(name: &'static str) -> impl Fn(MapError) -> DatapathError {
    move |source| DatapathError::Map { name, source }
}

impl Datapath {
    fn map_mut(&mut self, name: &'static str) -> Result<&mut Map, DatapathError> {
        self.ebpf.map_mut(name).ok_or(DatapathError::Missing(name))
    }

    /// Fills freshly loaded maps with `rules` and `policy`. `trace` makes the program record its
    /// last decision (for test runs; never on an attached program).
    pub fn install(&mut self, rules: &RuleSet, policy: &Policy, trace: bool) -> Result<(), DatapathError> {
        self.write_port_sets(&rules.port_set_bitmaps())?;
        let mut v4 = LpmTrie::<_, [u8; 4], RuleRef>::try_from(self.map_mut(LPM_V4)?).map_err(map_err(LPM_V4))?;
        for (net, value) in rules.lpm_entries() {
            if let IpNet::V4(n) = net {
                v4.insert(&Key::new(u32::from(n.prefix_len()), n.network().octets()), value, 0)
                    .map_err(map_err(LPM_V4))?;
            }
        }
        let mut v6 = LpmTrie::<_, [u8; 16], RuleRef>::try_from(self.map_mut(LPM_V6)?).map_err(map_err(LPM_V6))?;
        for (net, value) in rules.lpm_entries() {
            if let IpNet::V6(n) = net {
                v6.insert(&Key::new(u32::from(n.prefix_len()), n.network().octets()), value, 0)
                    .map_err(map_err(LPM_V6))?;
            }
        }
        self.write_policy(rules, policy, trace)
    }

    fn write_port_sets(&mut self, sets: &[PortSet]) -> Result<(), DatapathError> {
        let mut array = Array::<_, PortSet>::try_from(self.map_mut(PORT_SETS)?).map_err(map_err(PORT_SETS))?;
        for (i, set) in sets.iter().enumerate() {
            array.set(i as u32, set, 0).map_err(map_err(PORT_SETS))?;
        }
        Ok(())
    }

    /// Writes the resolvers, interface directions and, last, the config the program acts on.
    pub fn write_policy(&mut self, rules: &RuleSet, policy: &Policy, trace: bool) -> Result<(), DatapathError> {
        let mut resolvers = HashMap::<_, [u8; 16], u8>::try_from(self.map_mut(DNS_RESOLVERS)?)
            .map_err(map_err(DNS_RESOLVERS))?;
        for key in policy.dns_resolver_keys() {
            resolvers.insert(key, 1, 0).map_err(map_err(DNS_RESOLVERS))?;
        }
        let mut ifaces = HashMap::<_, u32, u32>::try_from(self.map_mut(IFACE_DIRECTION)?)
            .map_err(map_err(IFACE_DIRECTION))?;
        for (ifindex, dir) in &policy.iface_directions {
            ifaces.insert(ifindex, dir.bits(), 0).map_err(map_err(IFACE_DIRECTION))?;
        }
        self.write_config(policy.config(rules, trace))
    }

    pub fn write_config(&mut self, config: Config) -> Result<(), DatapathError> {
        let mut array = Array::<_, Config>::try_from(self.map_mut(CONFIG)?).map_err(map_err(CONFIG))?;
        array.set(0, config, 0).map_err(map_err(CONFIG))
    }

    pub fn config(&self) -> Result<Config, DatapathError> {
        let map = self.ebpf.map(CONFIG).ok_or(DatapathError::Missing(CONFIG))?;
        let array = Array::<_, Config>::try_from(map).map_err(map_err(CONFIG))?;
        array.get(&0, 0).map_err(map_err(CONFIG))
    }
}
