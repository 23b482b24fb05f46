//! The one order an endpoint set's prefixes are kept in: IPv4 before IPv6, by network, then
//! length (`IpNet`'s own order), each once. Sorted as plain integers (an IPv4 prefix in one
//! word), as a radix sort of 100,000 of them moves little; sorted once where a set is made, so
//! that what reads a list of one large set (the shrink check, the rule set) finds it in order.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Prefixes as sortable integers, by family.
#[derive(Debug, Default)]
pub struct PrefixKeys {
    /// Network in the upper bits, length in the lowest eight.
    pub v4: Vec<u64>,
    pub v6: Vec<(u128, u8)>,
}

impl PrefixKeys {
    pub fn with_capacity(n: usize) -> PrefixKeys {
        PrefixKeys {
            v4: Vec::with_capacity(n),
            v6: Vec::new(),
        }
    }

    /// The keys of every prefix of `nets`, sorted, once each.
    pub fn of<'a>(nets: impl IntoIterator<Item = &'a IpNet>) -> PrefixKeys {
        let nets = nets.into_iter();
        let mut keys = PrefixKeys::with_capacity(nets.size_hint().0);
        keys.extend(nets);
        keys.sort();
        keys
    }

    /// Adds the keys of `nets`, in their order ([`PrefixKeys::sort`] sorts them).
    pub fn extend<'a>(&mut self, nets: impl IntoIterator<Item = &'a IpNet>) {
        for net in nets {
            self.push(net);
        }
    }

    pub fn push(&mut self, net: &IpNet) {
        match net {
            IpNet::V4(n) => self
                .v4
                .push(u64::from(u32::from(n.network())) << 8 | u64::from(n.prefix_len())),
            IpNet::V6(n) => self.v6.push((u128::from(n.network()), n.prefix_len())),
        }
    }

    /// Sorts and drops repeats; keys already in order (a list made by this module) are only
    /// checked.
    pub fn sort(&mut self) {
        if !self.v4.is_sorted() {
            radsort::sort(&mut self.v4);
        }
        if !self.v6.is_sorted() {
            radsort::sort_by_key(&mut self.v6, |k| *k);
        }
        self.v4.dedup();
        self.v6.dedup();
    }

    /// The keys of several sorted runs, sorted, once each: merged in pairs, not sorted again.
    pub fn merged(mut runs: Vec<PrefixKeys>) -> PrefixKeys {
        // Runs of a list in order follow each other: joined in one pass.
        if follow(runs.iter().map(|r| r.v4.as_slice()))
            && follow(runs.iter().map(|r| r.v6.as_slice()))
        {
            let mut all = PrefixKeys {
                v4: Vec::with_capacity(runs.iter().map(|r| r.v4.len()).sum()),
                v6: Vec::with_capacity(runs.iter().map(|r| r.v6.len()).sum()),
            };
            for run in &runs {
                all.v4.extend_from_slice(&run.v4);
                all.v6.extend_from_slice(&run.v6);
            }
            return all;
        }
        while runs.len() > 1 {
            let mut pairs = runs.into_iter();
            let mut next = Vec::new();
            while let Some(a) = pairs.next() {
                next.push(match pairs.next() {
                    Some(b) => PrefixKeys {
                        v4: merge(&a.v4, &b.v4),
                        v6: merge(&a.v6, &b.v6),
                    },
                    None => a,
                });
            }
            runs = next;
        }
        runs.pop().unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The prefixes, in order.
    pub fn nets(&self) -> Vec<IpNet> {
        let v4 = self.v4.iter().map(|&k| {
            // The key was made from a valid length, which fits.
            let net = Ipv4Net::new_assert(((k >> 8) as u32).into(), k as u8);
            IpNet::V4(net)
        });
        let v6 = self
            .v6
            .iter()
            .map(|&(addr, len)| IpNet::V6(Ipv6Net::new_assert(addr.into(), len)));
        let mut out = Vec::with_capacity(self.len());
        out.extend(v4);
        out.extend(v6);
        out
    }

    /// How many prefixes both hold (both sorted).
    pub fn common(&self, other: &PrefixKeys) -> usize {
        fn common<T: Ord>(a: &[T], b: &[T]) -> usize {
            let (mut n, mut i) = (0, 0);
            for key in b {
                while a.get(i).is_some_and(|x| x < key) {
                    i += 1;
                }
                if a.get(i) == Some(key) {
                    n += 1;
                }
            }
            n
        }
        common(&self.v4, &other.v4) + common(&self.v6, &other.v6)
    }
}

/// Whether each of the sorted `runs` starts after the last key of those before it.
fn follow<'a, T: Ord + 'a>(runs: impl Iterator<Item = &'a [T]>) -> bool {
    let mut last: Option<&T> = None;
    for run in runs {
        if let (Some(l), Some(first)) = (last, run.first())
            && l >= first
        {
            return false;
        }
        last = run.last().or(last);
    }
    true
}

/// Two sorted runs as one, each key once.
fn merge<T: Ord + Copy>(a: &[T], b: &[T]) -> Vec<T> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while let (Some(&x), Some(&y)) = (a.get(i), b.get(j)) {
        out.push(x.min(y));
        i += usize::from(x <= y);
        j += usize::from(y <= x);
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// `nets` in the order of this module, once each.
pub fn sorted(nets: &[IpNet]) -> Vec<IpNet> {
    PrefixKeys::of(nets).nets()
}

#[cfg(test)]
mod tests {
    use rand::{Rng as _, SeedableRng as _, rngs::StdRng};

    use super::*;

    /// Random prefixes of both families, short and long, with repeats and equal networks of
    /// other lengths: sorted by the keys exactly as `IpNet`'s `Ord` sorts them, repeats gone.
    #[test]
    fn keys_sort_as_ipnet_does() {
        let mut rng = StdRng::seed_from_u64(11);
        let mut nets: Vec<IpNet> = (0..3000)
            .flat_map(|i| {
                let net = if rng.random_bool(0.7) {
                    let len = rng.random_range(0..=32);
                    IpNet::V4(Ipv4Net::new_assert(rng.random::<u32>().into(), len).trunc())
                } else {
                    let len = rng.random_range(0..=128);
                    IpNet::V6(Ipv6Net::new_assert(rng.random::<u128>().into(), len).trunc())
                };
                // Every seventh beside the same network one bit shorter.
                let shorter = (i % 7 == 0).then(|| {
                    IpNet::new_assert(net.network(), net.prefix_len().saturating_sub(1)).trunc()
                });
                std::iter::once(net).chain(shorter)
            })
            .collect();
        // Every tenth again.
        nets.extend(nets.clone().into_iter().step_by(10));
        let mut expected = nets.clone();
        expected.sort();
        expected.dedup();
        assert!(expected.len() < nets.len(), "the input holds repeats");
        assert_eq!(sorted(&nets), expected);
        // Sorted keys are kept as they are.
        assert_eq!(sorted(&expected), expected);
    }

    #[test]
    fn common_counts_each_family_apart() {
        let keys = |nets: &[&str]| {
            let nets: Vec<IpNet> = nets.iter().map(|n| n.parse().unwrap()).collect();
            PrefixKeys::of(&nets)
        };
        let a = keys(&["192.0.2.0/24", "198.51.100.0/24", "2001:db8::/48"]);
        let b = keys(&[
            "192.0.2.0/24",
            "::c000:200/120",
            "2001:db8::/48",
            "2001:db8::/47",
        ]);
        assert_eq!(a.common(&b), 2);
        assert_eq!(b.common(&a), 2);
    }
}
