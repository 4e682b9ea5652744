//! A member's way from its current assignment to its target, as Kafka's
//! CurrentAssignmentBuilder walks it: partitions to give up are revoked
//! first (the member keeps its epoch until its heartbeat no longer lists
//! them); partitions still held or being revoked by another member are
//! withheld until released. No partition is ever owned by two members.

use std::collections::BTreeSet;

use super::assignor::Assignment;

/// Kafka's MemberState.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// At its target epoch with every target partition.
    Stable,
    /// Waiting for the client to revoke `pending_revocation`.
    UnrevokedPartitions,
    /// At its target epoch, some target partitions not released yet.
    UnreleasedPartitions,
}

impl MemberState {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Stable => "stable",
            MemberState::UnrevokedPartitions => "unrevoked_partitions",
            MemberState::UnreleasedPartitions => "unreleased_partitions",
        }
    }
}

/// What reconciliation works on and produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub state: MemberState,
    pub epoch: i32,
    pub previous_epoch: i32,
    pub assigned: Assignment,
    pub pending_revocation: Assignment,
}

/// Does the client (per its heartbeat's owned partitions) still hold any
/// of `revoking`? Unknown (no owned list in the heartbeat) counts as yes.
fn still_owns(owned: Option<&Assignment>, revoking: &Assignment) -> bool {
    let Some(owned) = owned else { return true };
    owned.iter().any(|(t, ps)| {
        revoking
            .get(t)
            .is_some_and(|r| ps.iter().any(|p| r.contains(p)))
    })
}

/// One step of Kafka's CurrentAssignmentBuilder.build().
/// `taken(topic, p)`: held (or being revoked) by another member.
pub fn next(
    cur: &Position,
    target_epoch: i32,
    target: &Assignment,
    owned: Option<&Assignment>,
    taken: &dyn Fn(&str, i32) -> bool,
) -> Position {
    match cur.state {
        MemberState::Stable if cur.epoch != target_epoch => {
            compute(cur, cur.epoch, target_epoch, target, owned, taken)
        }
        MemberState::Stable => cur.clone(),
        MemberState::UnrevokedPartitions => {
            if still_owns(owned, &cur.pending_revocation) {
                cur.clone()
            } else {
                compute(cur, cur.epoch + 1, target_epoch, target, owned, taken)
            }
        }
        MemberState::UnreleasedPartitions => {
            compute(cur, cur.epoch, target_epoch, target, owned, taken)
        }
    }
}

fn compute(
    cur: &Position,
    epoch: i32,
    target_epoch: i32,
    target: &Assignment,
    owned: Option<&Assignment>,
    taken: &dyn Fn(&str, i32) -> bool,
) -> Position {
    let empty = BTreeSet::new();
    let topics: BTreeSet<&String> = target.keys().chain(cur.assigned.keys()).collect();
    let mut assigned = Assignment::new();
    let mut revoke = Assignment::new();
    let mut pending_assign = Assignment::new();
    let mut unreleased = false;
    for t in topics {
        let tgt = target.get(t).unwrap_or(&empty);
        let have = cur.assigned.get(t).unwrap_or(&empty);
        let keep: BTreeSet<i32> = have.intersection(tgt).copied().collect();
        let gone: BTreeSet<i32> = have.difference(&keep).copied().collect();
        let mut add: BTreeSet<i32> = tgt.difference(&keep).copied().collect();
        let before = add.len();
        add.retain(|p| !taken(t, *p));
        unreleased |= add.len() != before;
        if !keep.is_empty() {
            assigned.insert(t.clone(), keep);
        }
        if !gone.is_empty() {
            revoke.insert(t.clone(), gone);
        }
        if !add.is_empty() {
            pending_assign.insert(t.clone(), add);
        }
    }
    let moved = |state, new_epoch, assigned, pending_revocation| Position {
        state,
        epoch: new_epoch,
        previous_epoch: cur.epoch,
        assigned,
        pending_revocation,
    };
    if !revoke.is_empty() && still_owns(owned, &revoke) {
        // Revocation first, at the current epoch.
        return moved(MemberState::UnrevokedPartitions, epoch, assigned, revoke);
    }
    for (t, ps) in pending_assign {
        assigned.entry(t).or_default().extend(ps);
    }
    let state = if unreleased {
        MemberState::UnreleasedPartitions
    } else {
        MemberState::Stable
    };
    moved(state, target_epoch, assigned, Assignment::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(parts: &[i32]) -> Assignment {
        [("t".to_string(), parts.iter().copied().collect())].into()
    }

    fn stable(epoch: i32, parts: &[i32]) -> Position {
        Position {
            state: MemberState::Stable,
            epoch,
            previous_epoch: epoch - 1,
            assigned: a(parts),
            pending_revocation: Assignment::new(),
        }
    }

    #[test]
    fn revokes_before_it_moves_on() {
        let cur = stable(3, &[0, 1, 2]);
        let target = a(&[0, 1]);
        let owned = a(&[0, 1, 2]);
        let p = next(&cur, 4, &target, Some(&owned), &|_, _| false);
        assert_eq!(p.state, MemberState::UnrevokedPartitions);
        assert_eq!(p.epoch, 3);
        assert_eq!(p.assigned, a(&[0, 1]));
        assert_eq!(p.pending_revocation, a(&[2]));
        // Still owned: no progress.
        let same = next(&p, 4, &target, Some(&owned), &|_, _| false);
        assert_eq!(same, p);
        // Revoked: epoch 4, stable.
        let done = next(&p, 4, &target, Some(&a(&[0, 1])), &|_, _| false);
        assert_eq!(done.state, MemberState::Stable);
        assert_eq!(done.epoch, 4);
        assert_eq!(done.assigned, a(&[0, 1]));
    }

    #[test]
    fn withholds_partitions_another_member_holds() {
        let cur = stable(3, &[]);
        let target = a(&[2, 3]);
        let p = next(&cur, 4, &target, Some(&Assignment::new()), &|_, p| p == 2);
        assert_eq!(p.state, MemberState::UnreleasedPartitions);
        assert_eq!(p.epoch, 4);
        assert_eq!(p.assigned, a(&[3]));
        let later = next(&p, 4, &target, Some(&a(&[3])), &|_, _| false);
        assert_eq!(later.state, MemberState::Stable);
        assert_eq!(later.assigned, a(&[2, 3]));
    }
}
