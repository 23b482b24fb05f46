//! The policy's maps: the addresses with a role (resolvers, DHCP servers, the gateway's own
//! addresses and broadcasts), the per-interface directions and the `[[policy.allow]]`
//! services. Each moves to its new contents by writing what is new before removing what left.

use std::collections::HashMap as StdHashMap;

use aya::maps::{HashMap, LpmTrie, lpm_trie::Key};
use intune_common::maps::{ADDR_ROLES, ALLOW_V4, ALLOW_V6, AllowEntry, IFACE_DIRECTION};
use ipnet::IpNet;

use super::{Datapath, DatapathError, sync::map_err};
use crate::ruleset::policy::{Policy, allow_entries};

impl Datapath {
    /// Moves the running program to `policy`: new entries go in, the config switches, entries
    /// the old policy had and this one has not leave last.
    pub fn set_policy(&mut self, policy: &Policy) -> Result<(), DatapathError> {
        let allow = allow_entries(&policy.allow)?;
        let old = std::mem::replace(&mut self.policy, policy.clone());
        self.write_iface_directions(&old)?;
        let old_allowed = std::mem::take(&mut self.allowed);
        self.write_allow(&allow)?;
        // Writes the config too, with everything it points at in place.
        self.write_roles()?;
        let left: Vec<IpNet> = old_allowed
            .into_iter()
            .filter(|p| !self.allowed.contains(p))
            .collect();
        self.remove_allow(left)
    }

    /// The gateway's own interface addresses changed (netlink): traffic to them, and to their
    /// subnets' broadcasts, is local from now on.
    pub fn set_local_addresses(&mut self, local: &[IpNet]) -> Result<(), DatapathError> {
        self.local = local.to_vec();
        self.write_roles()
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The gateway's own addresses the program knows.
    pub fn local_addresses(&self) -> &[IpNet] {
        &self.local
    }

    /// Writes the policy's maps into a freshly loaded program.
    pub(super) fn write_policy(&mut self) -> Result<(), DatapathError> {
        let allow = allow_entries(&self.policy.allow)?;
        self.write_roles()?;
        self.write_iface_directions(&Policy::default())?;
        self.write_allow(&allow)
    }

    /// `ADDR_ROLES` from the policy and the local addresses: changed entries first, then the
    /// config that looks them up (with the leaving ones' bits still in), then the ones that
    /// left, then the config without their bits.
    fn write_roles(&mut self) -> Result<(), DatapathError> {
        let want = self.policy.address_roles(&self.local);
        let old = std::mem::take(&mut self.roles);
        let mut map = HashMap::<_, [u8; 16], u32>::try_from(self.map_mut(ADDR_ROLES)?)
            .map_err(map_err(ADDR_ROLES))?;
        for (key, bits) in &want {
            if old.get(key) != Some(bits) {
                map.insert(key, bits, 0).map_err(map_err(ADDR_ROLES))?;
            }
        }
        self.roles_leaving = old.into_keys().filter(|k| !want.contains_key(k)).collect();
        self.roles = want;
        self.write_installed_config()?;
        let leaving = std::mem::take(&mut self.roles_leaving);
        let mut map = HashMap::<_, [u8; 16], u32>::try_from(self.map_mut(ADDR_ROLES)?)
            .map_err(map_err(ADDR_ROLES))?;
        for key in &leaving {
            map.remove(key).map_err(map_err(ADDR_ROLES))?;
        }
        if !leaving.is_empty() {
            self.write_installed_config()?;
        }
        Ok(())
    }

    /// The config of the installed rule set, rewritten (nothing before a first install).
    fn write_installed_config(&mut self) -> Result<(), DatapathError> {
        match self.installed.as_ref().map(|r| self.config_for(r)) {
            Some(config) => self.write_config(config),
            None => Ok(()),
        }
    }

    fn write_iface_directions(&mut self, old: &Policy) -> Result<(), DatapathError> {
        let want: StdHashMap<u32, u32> = self
            .policy
            .iface_directions
            .iter()
            .map(|(i, d)| (*i, d.bits()))
            .collect();
        let mut map = HashMap::<_, u32, u32>::try_from(self.map_mut(IFACE_DIRECTION)?)
            .map_err(map_err(IFACE_DIRECTION))?;
        for (ifindex, dir) in &want {
            map.insert(ifindex, dir, 0)
                .map_err(map_err(IFACE_DIRECTION))?;
        }
        for (ifindex, _) in &old.iface_directions {
            if !want.contains_key(ifindex) {
                map.remove(ifindex).map_err(map_err(IFACE_DIRECTION))?;
            }
        }
        Ok(())
    }

    fn write_allow(&mut self, entries: &[(IpNet, AllowEntry)]) -> Result<(), DatapathError> {
        for (net, entry) in entries {
            self.allow_entry(net, Some(entry))?;
            self.allowed.push(*net);
        }
        Ok(())
    }

    fn remove_allow(&mut self, nets: Vec<IpNet>) -> Result<(), DatapathError> {
        for net in nets {
            self.allow_entry(&net, None)?;
        }
        Ok(())
    }

    /// Writes (`Some`) or removes (`None`) `net`'s entry in the trie of its family.
    fn allow_entry(
        &mut self,
        net: &IpNet,
        entry: Option<&AllowEntry>,
    ) -> Result<(), DatapathError> {
        let len = u32::from(net.prefix_len());
        match net {
            IpNet::V4(n) => self.allow_trie(ALLOW_V4, &Key::new(len, n.network().octets()), entry),
            IpNet::V6(n) => self.allow_trie(ALLOW_V6, &Key::new(len, n.network().octets()), entry),
        }
    }

    fn allow_trie<const N: usize>(
        &mut self,
        name: &'static str,
        key: &Key<[u8; N]>,
        entry: Option<&AllowEntry>,
    ) -> Result<(), DatapathError> {
        let mut trie = LpmTrie::<_, [u8; N], AllowEntry>::try_from(self.map_mut(name)?)
            .map_err(map_err(name))?;
        match entry {
            Some(entry) => trie.insert(key, entry, 0),
            None => trie.remove(key),
        }
        .map_err(map_err(name))
    }
}
