//! Replica placement for new partitions, as Kafka's `StripedReplicaPlacer`:
//! the brokers are grouped by rack (`broker.rack`; no rack is a rack of its
//! own), racks and brokers are walked round-robin from random starting points
//! so that leaders spread evenly over brokers and racks, each partition's
//! replicas land on as many racks as possible, and the leader (the first
//! replica) is always an unfenced broker. Fenced brokers may hold followers.

use crate::error::{BrokerError, Result};
use kafka_protocol::error::ResponseError;

/// A broker replicas may be placed on (registered and not shutting down).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UsableBroker {
    /// Its node id.
    pub(crate) id: i32,
    /// `broker.rack`.
    pub(crate) rack: Option<String>,
    /// Fenced: may hold followers but not lead.
    pub(crate) fenced: bool,
}

/// A small deterministic generator (splitmix64): placement needs only to
/// start at different points, not cryptographic randomness.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (> 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// The brokers of one kind (fenced or not) in one rack, walked from an
/// offset that moves on with every partition.
#[derive(Debug, Default)]
struct BrokerList {
    brokers: Vec<i32>,
    index: usize,
    offset: usize,
    epoch: usize,
}

impl BrokerList {
    fn initialize(&mut self, rng: &mut Rng) {
        if !self.brokers.is_empty() {
            self.brokers.sort_unstable();
            self.offset = rng.below(self.brokers.len());
        }
    }

    /// The next broker for the partition numbered `epoch`, each at most once per partition.
    fn next(&mut self, epoch: usize) -> Option<i32> {
        if self.brokers.is_empty() {
            return None;
        }
        if self.epoch != epoch {
            self.epoch = epoch;
            self.index = 0;
            self.offset = (self.offset + 1) % self.brokers.len();
        }
        if self.index >= self.brokers.len() {
            return None;
        }
        let broker = self.brokers[(self.index + self.offset) % self.brokers.len()];
        self.index += 1;
        Some(broker)
    }
}

#[derive(Debug, Default)]
struct Rack {
    unfenced: BrokerList,
    fenced: BrokerList,
}

impl Rack {
    fn next(&mut self, epoch: usize) -> Option<i32> {
        self.unfenced.next(epoch).or_else(|| self.fenced.next(epoch))
    }
}

/// The placer's state over one request's partitions.
pub(crate) struct Placer<'r> {
    rng: &'r mut Rng,
    /// Racks in name order (no rack first), shuffled after each round.
    racks: Vec<Rack>,
    total: usize,
    unfenced: usize,
    epoch: usize,
    offset: usize,
}

impl<'r> Placer<'r> {
    /// A placer over `brokers`.
    pub(crate) fn new(rng: &'r mut Rng, brokers: &[UsableBroker]) -> Placer<'r> {
        let mut by_rack: std::collections::BTreeMap<Option<&str>, Rack> = std::collections::BTreeMap::new();
        for b in brokers {
            let rack = by_rack.entry(b.rack.as_deref()).or_default();
            if b.fenced { &mut rack.fenced } else { &mut rack.unfenced }.brokers.push(b.id);
        }
        let mut racks: Vec<Rack> = by_rack.into_values().collect();
        for rack in &mut racks {
            rack.unfenced.initialize(rng);
            rack.fenced.initialize(rng);
        }
        let offset = if racks.is_empty() { 0 } else { rng.below(racks.len()) };
        let unfenced = brokers.iter().filter(|b| !b.fenced).count();
        Placer { rng, racks, total: brokers.len(), unfenced, epoch: 0, offset }
    }

    /// Refuses a replication factor the brokers cannot give, with Kafka's reasons.
    pub(crate) fn check(&self, rf: i16) -> std::result::Result<(), String> {
        if rf <= 0 {
            return Err(format!("Invalid replication factor {rf}: the replication factor must be positive."));
        }
        if self.unfenced == 0 {
            return Err("All brokers are currently fenced.".into());
        }
        if rf as usize > self.total {
            return Err(format!(
                "The target replication factor of {rf} cannot be reached because only {} broker(s) are registered.",
                self.total
            ));
        }
        Ok(())
    }

    /// The replicas of `count` partitions, or INVALID_REPLICATION_FACTOR.
    pub(crate) fn place_all(&mut self, count: i32, rf: i16) -> Result<Vec<Vec<i32>>> {
        self.check(rf).map_err(|reason| {
            BrokerError::kafka(
                ResponseError::InvalidReplicationFactor,
                format!("Unable to replicate the partition {rf} time(s): {reason}"),
            )
        })?;
        Ok((0..count).map(|_| self.place(rf as usize)).collect())
    }

    /// One partition's replicas; `check` has passed.
    fn place(&mut self, rf: usize) -> Vec<i32> {
        // After as many partitions as unfenced brokers, reshuffle so the same
        // assignments do not repeat.
        if self.epoch == self.unfenced && self.unfenced > 1 {
            self.rng.shuffle(&mut self.racks);
            for rack in &mut self.racks {
                self.rng.shuffle(&mut rack.unfenced.brokers);
                self.rng.shuffle(&mut rack.fenced.brokers);
            }
            self.epoch = 0;
        }
        let n = self.racks.len();
        if self.offset >= n {
            self.offset = 0;
        }
        let mut replicas = Vec::with_capacity(rf);
        // The leader: the first unfenced broker from the rack at the offset on.
        let mut rack = self.offset;
        let mut first_rack = loop {
            if let Some(b) = self.racks[rack].unfenced.next(self.epoch) {
                replicas.push(b);
                break Some(rack);
            }
            rack = (rack + 1) % n;
        };
        // Followers: one per rack in turn, the leader's rack skipped once.
        let mut rack = self.offset;
        while replicas.len() < rf {
            let next = if first_rack == Some(rack) {
                first_rack = None;
                None
            } else {
                self.racks[rack].next(self.epoch)
            };
            rack = (rack + 1) % n;
            if let Some(b) = next {
                replicas.push(b);
            }
        }
        self.epoch += 1;
        self.offset += 1;
        replicas
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn brokers(spec: &[(i32, Option<&str>, bool)]) -> Vec<UsableBroker> {
        spec.iter().map(|&(id, rack, fenced)| UsableBroker { id, rack: rack.map(String::from), fenced }).collect()
    }

    #[test]
    fn leaders_spread_evenly_and_replicas_are_distinct() {
        for seed in 0..20 {
            let mut rng = Rng::new(seed);
            let all = brokers(&[(1, None, false), (2, None, false), (3, None, false)]);
            let placed = Placer::new(&mut rng, &all).place_all(6, 3).expect("place");
            let mut leaders: BTreeMap<i32, usize> = BTreeMap::new();
            for replicas in &placed {
                assert_eq!(replicas.iter().collect::<BTreeSet<_>>().len(), 3, "distinct: {replicas:?}");
                *leaders.entry(replicas[0]).or_default() += 1;
            }
            assert_eq!(leaders, BTreeMap::from([(1, 2), (2, 2), (3, 2)]), "seed {seed}: {placed:?}");
        }
    }

    #[test]
    fn replicas_of_a_partition_land_on_different_racks_and_fenced_brokers_never_lead() {
        for seed in 0..20 {
            let mut rng = Rng::new(seed);
            let all = brokers(&[
                (1, Some("a"), false),
                (2, Some("a"), false),
                (3, Some("b"), false),
                (4, Some("b"), true),
                (5, Some("c"), false),
            ]);
            let rack = |id: i32| all.iter().find(|b| b.id == id).and_then(|b| b.rack.clone());
            for replicas in Placer::new(&mut rng, &all).place_all(10, 3).expect("place") {
                let racks: BTreeSet<_> = replicas.iter().map(|&r| rack(r)).collect();
                assert_eq!(racks.len(), 3, "seed {seed}: {replicas:?} on racks {racks:?}");
                assert_ne!(replicas[0], 4, "a fenced broker leads: {replicas:?}");
            }
        }
    }

    #[test]
    fn a_replication_factor_above_the_registered_brokers_or_with_all_fenced_is_refused() {
        let mut rng = Rng::new(1);
        let err = Placer::new(&mut rng, &brokers(&[(1, None, false), (2, None, false)])).place_all(1, 3).err().expect("rf 3");
        assert_eq!(err.response_error(), ResponseError::InvalidReplicationFactor);
        assert!(err.to_string().contains("only 2 broker(s) are registered"), "{err}");
        let err = Placer::new(&mut rng, &brokers(&[(1, None, true)])).place_all(1, 1).err().expect("all fenced");
        assert!(err.to_string().contains("All brokers are currently fenced"), "{err}");
    }
}
