//! Server-side assignors of the consumer protocol (KIP-848): `uniform`
//! (Kafka's default: balanced and sticky) and `range` (contiguous ranges
//! per topic, co-partitioned topics line up).
//!
//! Both compute a *target* assignment; the reconciliation in
//! `reconcile.rs` moves each member towards it without ever giving a
//! partition to two members at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Topic name -> partitions.
pub type Assignment = BTreeMap<String, BTreeSet<i32>>;

pub const UNIFORM: &str = "uniform";
pub const RANGE: &str = "range";
/// In Kafka's order: the first is the default (`group.consumer.assignors`).
pub const ASSIGNORS: &[&str] = &[UNIFORM, RANGE];

pub fn known(name: &str) -> bool {
    ASSIGNORS.contains(&name)
}

/// One member as an assignor sees it.
pub struct Subscriber<'a> {
    pub id: &'a str,
    pub topics: &'a BTreeSet<String>,
    /// Its previous target, for stickiness.
    pub previous: Option<&'a Assignment>,
}

/// `metadata`: subscribed topics that exist, with their partition counts.
/// Members must be sorted by id (the result is then deterministic).
pub fn assign(
    assignor: &str,
    members: &[Subscriber<'_>],
    metadata: &BTreeMap<String, i32>,
) -> HashMap<String, Assignment> {
    match assignor {
        RANGE => range(members, metadata),
        _ => uniform(members, metadata),
    }
}

/// Kafka's RangeAssignor: per topic, its subscribers in member-id order get
/// contiguous ranges; the first `partitions % subscribers` get one more.
fn range(
    members: &[Subscriber<'_>],
    metadata: &BTreeMap<String, i32>,
) -> HashMap<String, Assignment> {
    let mut out: HashMap<String, Assignment> = members
        .iter()
        .map(|m| (m.id.to_string(), Assignment::new()))
        .collect();
    for (topic, &count) in metadata {
        let subs: Vec<&Subscriber<'_>> = members
            .iter()
            .filter(|m| m.topics.contains(topic))
            .collect();
        if subs.is_empty() || count <= 0 {
            continue;
        }
        let n = subs.len() as i32;
        let (per, extra) = (count / n, count % n);
        for (i, m) in subs.iter().enumerate() {
            let i = i as i32;
            let start = i * per + i.min(extra);
            let len = per + i32::from(i < extra);
            if len == 0 {
                continue;
            }
            if let Some(a) = out.get_mut(m.id) {
                a.entry(topic.clone())
                    .or_default()
                    .extend(start..start + len);
            }
        }
    }
    out
}

/// Balanced and sticky: every member keeps what it had in the previous
/// target while that keeps the counts within one of each other (among
/// members that could take the partition); new and orphaned partitions go
/// to the least loaded eligible member; then partitions move one at a time
/// from the most to the least loaded eligible member until no move helps.
/// For identical subscriptions this is the minimal number of moves.
fn uniform(
    members: &[Subscriber<'_>],
    metadata: &BTreeMap<String, i32>,
) -> HashMap<String, Assignment> {
    let n = members.len();
    let mut owner: HashMap<(String, i32), usize> = HashMap::new();
    let mut held: Vec<BTreeSet<(String, i32)>> = vec![BTreeSet::new(); n];
    let eligible = |i: usize, topic: &str| members[i].topics.contains(topic);
    let valid = |topic: &str, p: i32| metadata.get(topic).is_some_and(|&c| p >= 0 && p < c);
    for (i, m) in members.iter().enumerate() {
        let Some(prev) = m.previous else { continue };
        for (topic, parts) in prev {
            if !eligible(i, topic) {
                continue;
            }
            for &p in parts {
                let key = (topic.clone(), p);
                if valid(topic, p) && !owner.contains_key(&key) {
                    owner.insert(key.clone(), i);
                    held[i].insert(key);
                }
            }
        }
    }
    for (topic, &count) in metadata {
        for p in 0..count.max(0) {
            let key = (topic.clone(), p);
            if owner.contains_key(&key) {
                continue;
            }
            let best = (0..n)
                .filter(|&i| eligible(i, topic))
                .min_by_key(|&i| (held[i].len(), i));
            if let Some(i) = best {
                owner.insert(key.clone(), i);
                held[i].insert(key);
            }
        }
    }
    // Balance. Each move lowers the sum of squared counts, so this ends;
    // the cap only bounds a pathological input.
    let total: usize = held.iter().map(|h| h.len()).sum();
    for _ in 0..=total.saturating_mul(n.max(1)) {
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(held[i].len()), i));
        let mut moved = None;
        'find: for &from in &order {
            // Highest partitions move first: the low ones stay put.
            for key in held[from].iter().rev() {
                let to = (0..n)
                    .filter(|&j| j != from && eligible(j, &key.0))
                    .filter(|&j| held[j].len() + 1 < held[from].len())
                    .min_by_key(|&j| (held[j].len(), j));
                if let Some(to) = to {
                    moved = Some((from, to, key.clone()));
                    break 'find;
                }
            }
        }
        let Some((from, to, key)) = moved else { break };
        held[from].remove(&key);
        held[to].insert(key);
    }
    members
        .iter()
        .zip(held)
        .map(|(m, h)| {
            let mut a = Assignment::new();
            for (t, p) in h {
                a.entry(t).or_default().insert(p);
            }
            (m.id.to_string(), a)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn count(a: &Assignment) -> usize {
        a.values().map(|s| s.len()).sum()
    }

    #[test]
    fn uniform_splits_evenly_and_is_sticky() {
        let t = topics(&["a"]);
        let meta: BTreeMap<String, i32> = [("a".to_string(), 6)].into();
        let two = [
            Subscriber {
                id: "m1",
                topics: &t,
                previous: None,
            },
            Subscriber {
                id: "m2",
                topics: &t,
                previous: None,
            },
        ];
        let first = assign(UNIFORM, &two, &meta);
        assert_eq!(count(&first["m1"]), 3);
        assert_eq!(count(&first["m2"]), 3);
        let three = [
            Subscriber {
                id: "m1",
                topics: &t,
                previous: Some(&first["m1"]),
            },
            Subscriber {
                id: "m2",
                topics: &t,
                previous: Some(&first["m2"]),
            },
            Subscriber {
                id: "m3",
                topics: &t,
                previous: None,
            },
        ];
        let second = assign(UNIFORM, &three, &meta);
        for m in ["m1", "m2", "m3"] {
            assert_eq!(count(&second[m]), 2, "{m}: {second:?}");
        }
        // Only two partitions moved: m1 and m2 kept two of their three.
        for m in ["m1", "m2"] {
            let kept = second[m]["a"].intersection(&first[m]["a"]).count();
            assert_eq!(kept, 2, "{m}");
        }
    }

    #[test]
    fn uniform_respects_subscriptions() {
        let ab = topics(&["a", "b"]);
        let a = topics(&["a"]);
        let meta: BTreeMap<String, i32> = [("a".to_string(), 2), ("b".to_string(), 4)].into();
        let ms = [
            Subscriber {
                id: "m1",
                topics: &ab,
                previous: None,
            },
            Subscriber {
                id: "m2",
                topics: &a,
                previous: None,
            },
        ];
        let r = assign(UNIFORM, &ms, &meta);
        assert!(!r["m2"].contains_key("b"));
        assert_eq!(count(&r["m1"]) + count(&r["m2"]), 6);
    }

    #[test]
    fn range_gives_contiguous_ranges() {
        let t = topics(&["a", "b"]);
        let meta: BTreeMap<String, i32> = [("a".to_string(), 5), ("b".to_string(), 5)].into();
        let ms = [
            Subscriber {
                id: "m1",
                topics: &t,
                previous: None,
            },
            Subscriber {
                id: "m2",
                topics: &t,
                previous: None,
            },
        ];
        let r = assign(RANGE, &ms, &meta);
        assert_eq!(r["m1"]["a"], [0, 1, 2].into());
        assert_eq!(r["m2"]["a"], [3, 4].into());
        assert_eq!(r["m1"]["b"], [0, 1, 2].into());
    }
}

#[cfg(test)]
mod scale {
    use super::*;

    /// 100 members on 2,000 partitions of 4 topics, then a 101st: counts
    /// within one of each other, and only the partitions the newcomer
    /// needs move (the assignment runs under the group's lock, so it must
    /// stay cheap: this takes milliseconds).
    #[test]
    fn a_large_group_rebalances_with_few_moves() {
        let t: BTreeSet<String> = (0..4).map(|i| format!("t{i}")).collect();
        let meta: BTreeMap<String, i32> = t.iter().map(|n| (n.clone(), 500)).collect();
        let ids: Vec<String> = (0..101).map(|i| format!("m{i:03}")).collect();
        let subs =
            |n: usize, prev: Option<&HashMap<String, Assignment>>| -> HashMap<String, Assignment> {
                let members: Vec<Subscriber<'_>> = ids[..n]
                    .iter()
                    .map(|id| Subscriber {
                        id,
                        topics: &t,
                        previous: prev.and_then(|p| p.get(id)),
                    })
                    .collect();
                assign(UNIFORM, &members, &meta)
            };
        let started = std::time::Instant::now();
        let first = subs(100, None);
        let second = subs(101, Some(&first));
        let counts: Vec<usize> = second
            .values()
            .map(|a| a.values().map(|s| s.len()).sum())
            .collect();
        assert!(counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1);
        assert_eq!(counts.iter().sum::<usize>(), 2000);
        let moved: usize = ids[..100]
            .iter()
            .map(|id| {
                let before: usize = first[id].values().map(|s| s.len()).sum();
                let kept: usize = first[id]
                    .iter()
                    .map(|(t, ps)| second[id].get(t).map_or(0, |q| ps.intersection(q).count()))
                    .sum();
                before - kept
            })
            .sum();
        let newcomer: usize = second["m100"].values().map(|s| s.len()).sum();
        assert_eq!(moved, newcomer, "only the newcomer's partitions moved");
        eprintln!(
            "two assignments of 2000 partitions: {:?}",
            started.elapsed()
        );
    }
}
