//! A family's prefixes as the lookup table's compiler keeps them: by /16 region, the prefixes
//! of /16 and shorter apart (they span regions). A change finds the few prefixes of its region
//! at once, where a tree of 100,000 costs a walk of cache misses per change.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

/// A prefix's key: network (IPv4 in the top 32 bits of the number) and length.
pub type Key = (u128, u8);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Regions {
    short: BTreeMap<Key, u32>,
    /// Each region's longer prefixes with their leaves, sorted by key.
    long: FxHashMap<u16, Vec<(Key, u32)>>,
}

/// The /16 region a network lies in.
pub fn region_of(net: u128) -> u16 {
    (net >> 112) as u16
}

impl Regions {
    pub fn get(&self, key: &Key) -> Option<u32> {
        if key.1 <= 16 {
            return self.short.get(key).copied();
        }
        let list = self.long.get(&region_of(key.0))?;
        let i = list.binary_search_by(|(k, _)| k.cmp(key)).ok()?;
        Some(list[i].1)
    }

    /// Sets the leaf of `key`; the one it had, if any.
    pub fn insert(&mut self, key: Key, leaf: u32) -> Option<u32> {
        if key.1 <= 16 {
            return self.short.insert(key, leaf);
        }
        let list = self.long.entry(region_of(key.0)).or_default();
        match list.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(i) => Some(std::mem::replace(&mut list[i].1, leaf)),
            Err(i) => {
                list.insert(i, (key, leaf));
                None
            }
        }
    }

    pub fn remove(&mut self, key: &Key) -> Option<u32> {
        if key.1 <= 16 {
            return self.short.remove(key);
        }
        let k16 = region_of(key.0);
        let list = self.long.get_mut(&k16)?;
        let i = list.binary_search_by(|(k, _)| k.cmp(key)).ok()?;
        let (_, leaf) = list.remove(i);
        if list.is_empty() {
            self.long.remove(&k16);
        }
        Some(leaf)
    }

    /// The prefixes of /16 and shorter.
    pub fn short(&self) -> impl Iterator<Item = (Key, u32)> + '_ {
        self.short.iter().map(|(&k, &v)| (k, v))
    }

    /// The longer prefixes in region `k16`, sorted by key.
    pub fn long_in(&self, k16: u16) -> &[(Key, u32)] {
        self.long.get(&k16).map_or(&[], Vec::as_slice)
    }

    /// Every prefix, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (Key, u32)> + '_ {
        self.short()
            .chain(self.long.values().flat_map(|l| l.iter().copied()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_each_prefix_in_its_region_and_the_short_ones_apart() {
        let mut r = Regions::default();
        let net = |a: u32| u128::from(a) << 96;
        assert_eq!(r.insert((net(0x0a01_0200), 24), 1), None);
        assert_eq!(r.insert((net(0x0a01_0000), 16), 2), None);
        assert_eq!(r.insert((net(0x0a01_0280), 25), 3), None);
        assert_eq!(r.insert((net(0x0a00_0000), 8), 4), None);
        assert_eq!(r.insert((net(0x0a01_0200), 24), 5), Some(1));
        assert_eq!(r.get(&(net(0x0a01_0200), 24)), Some(5));
        assert_eq!(r.get(&(net(0x0a01_0200), 23)), None);
        assert_eq!(
            r.long_in(0x0a01),
            [((net(0x0a01_0200), 24), 5), ((net(0x0a01_0280), 25), 3)]
        );
        assert_eq!(r.short().count(), 2, "the /16 and the /8");
        assert_eq!(r.remove(&(net(0x0a01_0200), 24)), Some(5));
        assert_eq!(r.remove(&(net(0x0a01_0280), 25)), Some(3));
        assert_eq!(r.remove(&(net(0x0a01_0280), 25)), None);
        assert!(r.long_in(0x0a01).is_empty());
        assert_eq!(r.iter().count(), 2);
        assert_eq!(r, {
            let mut s = Regions::default();
            s.insert((net(0x0a00_0000), 8), 4);
            s.insert((net(0x0a01_0000), 16), 2);
            s
        });
    }
}
