//! Server-side partition assignors of KIP-848 consumer groups: uniform and range.
//!
//! An assignor maps every partition of the topics the members subscribe to onto
//! one subscribed member. It sees each member's subscription (topic ids) and its
//! current target assignment, and returns the new target assignment; the group
//! then moves members towards it (see `consumer.rs`).

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

/// Partitions by topic id.
pub(crate) type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// What an assignor knows of one member.
#[derive(Debug, Clone, Default)]
pub(crate) struct MemberSpec {
    /// The topic ids the member subscribes to (existing topics only).
    pub subscribed: BTreeSet<Uuid>,
    /// The member's current target assignment.
    pub current: Assignment,
}

/// The assignor names served; `group.consumer.assignors` chooses among them.
pub(crate) const BUILT_IN: [&str; 2] = ["uniform", "range"];

/// Runs the assignor `name` (`uniform` or `range`; anything else is treated as
/// `uniform`: the coordinator only passes configured names). `topics` gives the
/// partition count of every topic a member may subscribe to. Every member
/// appears in the result, possibly with nothing.
pub(crate) fn assign(
    name: &str,
    members: &BTreeMap<String, MemberSpec>,
    topics: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Assignment> {
    match name {
        "range" => range(members, topics),
        _ => uniform(members, topics),
    }
}

/// Kafka's range assignor: per topic, the subscribed members in member-id
/// order take contiguous ranges of partitions, the first `count % members`
/// of them one more.
fn range(members: &BTreeMap<String, MemberSpec>, topics: &BTreeMap<Uuid, i32>) -> BTreeMap<String, Assignment> {
    let mut result: BTreeMap<String, Assignment> = members.keys().map(|id| (id.clone(), Assignment::new())).collect();
    for (&topic, &count) in topics {
        let subscribers: Vec<&String> =
            members.iter().filter(|(_, m)| m.subscribed.contains(&topic)).map(|(id, _)| id).collect();
        if subscribers.is_empty() || count <= 0 {
            continue;
        }
        let n = subscribers.len() as i32;
        let (per_member, extra) = (count / n, count % n);
        let mut start = 0;
        for (i, id) in subscribers.into_iter().enumerate() {
            let len = per_member + i32::from((i as i32) < extra);
            if len > 0 {
                if let Some(assignment) = result.get_mut(id) {
                    assignment.insert(topic, (start..start + len).collect());
                }
            }
            start += len;
        }
    }
    result
}

/// The uniform assignor: balanced (no partition could move to a subscribed
/// member holding two fewer, so with identical subscriptions every member's
/// count is within one of the others') and sticky (a partition stays with its
/// current owner unless balance needs it elsewhere).
fn uniform(members: &BTreeMap<String, MemberSpec>, topics: &BTreeMap<Uuid, i32>) -> BTreeMap<String, Assignment> {
    let specs: Vec<(&String, &MemberSpec)> = members.iter().collect();
    let mut held: Vec<BTreeSet<(Uuid, i32)>> = vec![BTreeSet::new(); specs.len()];
    let mut taken: BTreeSet<(Uuid, i32)> = BTreeSet::new();

    // Current owners keep what they may still have.
    for (i, (_, spec)) in specs.iter().enumerate() {
        for (topic, partitions) in &spec.current {
            let Some(&count) = topics.get(topic) else { continue };
            if !spec.subscribed.contains(topic) {
                continue;
            }
            for &p in partitions {
                if (0..count).contains(&p) && taken.insert((*topic, p)) {
                    held[i].insert((*topic, p));
                }
            }
        }
    }

    // Free partitions go to the least loaded subscribed member.
    for (&topic, &count) in topics {
        let eligible: Vec<usize> = (0..specs.len()).filter(|&i| specs[i].1.subscribed.contains(&topic)).collect();
        if eligible.is_empty() {
            continue;
        }
        for p in 0..count.max(0) {
            if taken.contains(&(topic, p)) {
                continue;
            }
            if let Some(&i) = eligible.iter().min_by_key(|&&i| (held[i].len(), i)) {
                held[i].insert((topic, p));
                taken.insert((topic, p));
            }
        }
    }

    // Move single partitions from the most to the least loaded member that may
    // take them while their counts differ by two or more. Each move lowers the
    // sum of squared counts, so this ends.
    loop {
        let mut order: Vec<usize> = (0..specs.len()).collect();
        order.sort_by_key(|&i| (held[i].len(), i));
        let mut moved = None;
        'search: for &donor in order.iter().rev() {
            for &receiver in &order {
                if held[donor].len() < held[receiver].len() + 2 {
                    break;
                }
                let subscribed = &specs[receiver].1.subscribed;
                if let Some(&tp) = held[donor].iter().rev().find(|(topic, _)| subscribed.contains(topic)) {
                    moved = Some((donor, receiver, tp));
                    break 'search;
                }
            }
        }
        let Some((donor, receiver, tp)) = moved else { break };
        held[donor].remove(&tp);
        held[receiver].insert(tp);
    }

    specs
        .iter()
        .zip(held)
        .map(|((id, _), partitions)| {
            let mut assignment = Assignment::new();
            for (topic, p) in partitions {
                assignment.entry(topic).or_default().insert(p);
            }
            ((*id).clone(), assignment)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn topic(n: u8) -> Uuid {
        Uuid::from_bytes([n; 16])
    }

    fn spec(topics: &[Uuid], current: &Assignment) -> MemberSpec {
        MemberSpec { subscribed: topics.iter().copied().collect(), current: current.clone() }
    }

    fn count(a: &Assignment) -> usize {
        a.values().map(BTreeSet::len).sum()
    }

    /// Every partition of `topics` is assigned exactly once.
    fn assert_complete(result: &BTreeMap<String, Assignment>, topics: &BTreeMap<Uuid, i32>) {
        let mut seen = BTreeSet::new();
        for a in result.values() {
            for (t, ps) in a {
                for p in ps {
                    assert!(seen.insert((*t, *p)), "partition {t}-{p} assigned twice");
                }
            }
        }
        let all: BTreeSet<(Uuid, i32)> = topics.iter().flat_map(|(t, c)| (0..*c).map(move |p| (*t, p))).collect();
        assert_eq!(seen, all);
    }

    fn assert_balanced(result: &BTreeMap<String, Assignment>) {
        let counts: Vec<usize> = result.values().map(count).collect();
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(max - min <= 1, "unbalanced: {counts:?}");
    }

    fn members(n: usize, topics: &[Uuid], previous: &BTreeMap<String, Assignment>) -> BTreeMap<String, MemberSpec> {
        (0..n)
            .map(|i| {
                let id = format!("m{i}");
                let current = previous.get(&id).cloned().unwrap_or_default();
                (id, spec(topics, &current))
            })
            .collect()
    }

    #[test]
    fn uniform_balances_one_topic() {
        let topics = BTreeMap::from([(topic(1), 7)]);
        let result = assign("uniform", &members(3, &[topic(1)], &BTreeMap::new()), &topics);
        assert_complete(&result, &topics);
        assert_balanced(&result);
    }

    #[test]
    fn uniform_balances_many_topics() {
        let topics = BTreeMap::from([(topic(1), 5), (topic(2), 3), (topic(3), 1)]);
        let all = [topic(1), topic(2), topic(3)];
        let result = assign("uniform", &members(4, &all, &BTreeMap::new()), &topics);
        assert_complete(&result, &topics);
        assert_balanced(&result);
    }

    #[test]
    fn uniform_is_sticky_when_a_member_joins() {
        let topics = BTreeMap::from([(topic(1), 6)]);
        let before = assign("uniform", &members(3, &[topic(1)], &BTreeMap::new()), &topics);
        let after = assign("uniform", &members(4, &[topic(1)], &before), &topics);
        assert_complete(&after, &topics);
        assert_balanced(&after);
        // Six partitions over four members (2, 2, 1, 1): only one moves, to the new member.
        let kept: usize = (0..3)
            .map(|i| {
                let id = format!("m{i}");
                let (b, a) = (&before[&id][&topic(1)], after[&id].get(&topic(1)).cloned().unwrap_or_default());
                assert!(a.is_subset(b), "{id} gained a partition it did not have: {b:?} -> {a:?}");
                a.len()
            })
            .sum();
        assert_eq!(kept, 5);
        assert_eq!(count(&after["m3"]), 1);
    }

    #[test]
    fn uniform_is_sticky_when_a_member_leaves() {
        let topics = BTreeMap::from([(topic(1), 8)]);
        let before = assign("uniform", &members(4, &[topic(1)], &BTreeMap::new()), &topics);
        let mut remaining = members(4, &[topic(1)], &before);
        remaining.remove("m3");
        let after = assign("uniform", &remaining, &topics);
        assert_complete(&after, &topics);
        assert_balanced(&after);
        for id in ["m0", "m1", "m2"] {
            assert!(before[id][&topic(1)].is_subset(&after[id][&topic(1)]), "{id} lost a partition");
        }
    }

    #[test]
    fn uniform_keeps_a_balanced_assignment() {
        let topics = BTreeMap::from([(topic(1), 6), (topic(2), 2)]);
        let all = [topic(1), topic(2)];
        let first = assign("uniform", &members(3, &all, &BTreeMap::new()), &topics);
        let second = assign("uniform", &members(3, &all, &first), &topics);
        assert_eq!(first, second);
    }

    #[test]
    fn uniform_with_disjoint_subscriptions() {
        let topics = BTreeMap::from([(topic(1), 4), (topic(2), 2), (topic(3), 3)]);
        let specs = BTreeMap::from([
            ("a".to_string(), spec(&[topic(1)], &Assignment::new())),
            ("b".to_string(), spec(&[topic(2)], &Assignment::new())),
            ("c".to_string(), spec(&[topic(1), topic(3)], &Assignment::new())),
        ]);
        let result = assign("uniform", &specs, &topics);
        assert_complete(&result, &topics);
        assert_eq!(result["b"], BTreeMap::from([(topic(2), BTreeSet::from([0, 1]))]));
        for (id, a) in &result {
            assert!(a.keys().all(|t| specs[id].subscribed.contains(t)), "{id} got a topic it does not subscribe to");
        }
        // a and c share topic 1; c also has all of topic 3, so a takes more of topic 1.
        assert_eq!(count(&result["a"]) + count(&result["c"]), 7);
        assert!(count(&result["a"]).abs_diff(count(&result["c"])) <= 1);
    }

    #[test]
    fn uniform_drops_unsubscribed_and_vanished_partitions() {
        let topics = BTreeMap::from([(topic(1), 2)]);
        let current = BTreeMap::from([(topic(1), BTreeSet::from([0, 1, 5])), (topic(9), BTreeSet::from([0]))]);
        let specs = BTreeMap::from([("a".to_string(), spec(&[topic(1)], &current))]);
        let result = assign("uniform", &specs, &topics);
        assert_eq!(result["a"], BTreeMap::from([(topic(1), BTreeSet::from([0, 1]))]));
    }

    #[test]
    fn range_gives_contiguous_ranges_first_members_one_more() {
        let topics = BTreeMap::from([(topic(1), 7), (topic(2), 2)]);
        let specs = BTreeMap::from([
            ("b".to_string(), spec(&[topic(1), topic(2)], &Assignment::new())),
            ("a".to_string(), spec(&[topic(1), topic(2)], &Assignment::new())),
            ("c".to_string(), spec(&[topic(1)], &Assignment::new())),
        ]);
        let result = assign("range", &specs, &topics);
        assert_complete(&result, &topics);
        assert_eq!(result["a"][&topic(1)], BTreeSet::from([0, 1, 2]));
        assert_eq!(result["b"][&topic(1)], BTreeSet::from([3, 4]));
        assert_eq!(result["c"][&topic(1)], BTreeSet::from([5, 6]));
        assert_eq!(result["a"][&topic(2)], BTreeSet::from([0]));
        assert_eq!(result["b"][&topic(2)], BTreeSet::from([1]));
        assert!(!result["c"].contains_key(&topic(2)));
    }

    #[test]
    fn range_with_more_members_than_partitions() {
        let topics = BTreeMap::from([(topic(1), 2)]);
        let result = assign("range", &members(3, &[topic(1)], &BTreeMap::new()), &topics);
        assert_complete(&result, &topics);
        assert!(result["m2"].is_empty());
    }
}
