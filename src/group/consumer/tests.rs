//! The coordinator's side of KIP-848 without a network: joins, the
//! incremental hand-over, leaves, static members, fencing.

use super::*;

fn topics(name: &str) -> Option<i32> {
    (name == "t").then_some(6)
}

fn groups() -> ConsumerGroups {
    ConsumerGroups::new(ConsumerSettings::default())
}

fn join(c: &ConsumerGroups, id: &str, inst: Option<&str>) -> HeartbeatOk {
    let g = c.get_or_create("g", None).unwrap();
    c.heartbeat(
        &g,
        Heartbeat {
            group: "g".into(),
            member_id: id.into(),
            member_epoch: 0,
            instance_id: inst.map(str::to_string),
            rebalance_timeout_ms: 30000,
            subscribed_topics: Some(vec!["t".into()]),
            owned: Some(Assignment::new()),
            ..Default::default()
        },
        &topics,
    )
    .unwrap()
}

fn beat(
    c: &ConsumerGroups,
    id: &str,
    epoch: i32,
    owned: &Assignment,
) -> Result<HeartbeatOk, HeartbeatError> {
    let g = c.get("g").unwrap();
    c.heartbeat(
        &g,
        Heartbeat {
            group: "g".into(),
            member_id: id.into(),
            member_epoch: epoch,
            rebalance_timeout_ms: -1,
            owned: Some(owned.clone()),
            ..Default::default()
        },
        &topics,
    )
}

fn parts(a: &Assignment) -> BTreeSet<i32> {
    a.get("t").cloned().unwrap_or_default()
}

#[test]
fn a_new_member_gets_partitions_only_after_their_owner_revoked_them() {
    let c = groups();
    let a = join(&c, "a", None);
    assert_eq!(parts(a.assignment.as_ref().unwrap()).len(), 6);
    let a_owned = a.assignment.clone().unwrap();
    let b = join(&c, "b", None);
    // b's target is three partitions, all still held by a: none yet.
    assert!(parts(b.assignment.as_ref().unwrap()).is_empty());
    assert_eq!(
        c.snapshot("g").unwrap().state,
        ConsumerGroupState::Reconciling
    );
    // a is asked to give three up and keeps its epoch meanwhile.
    let a2 = beat(&c, "a", a.member_epoch, &a_owned).unwrap();
    assert_eq!(a2.member_epoch, a.member_epoch);
    let a_kept = a2.assignment.clone().unwrap();
    assert_eq!(parts(&a_kept).len(), 3);
    // b still gets nothing while a's heartbeat says it owns all six.
    let b2 = beat(&c, "b", b.member_epoch, &Assignment::new()).unwrap();
    assert!(b2.assignment.is_none_or(|x| parts(&x).is_empty()));
    // a revokes: it moves to the new epoch, then b gets the other three.
    let a3 = beat(&c, "a", a2.member_epoch, &a_kept).unwrap();
    assert_eq!(a3.member_epoch, b.member_epoch);
    let b3 = beat(&c, "b", b.member_epoch, &Assignment::new()).unwrap();
    let b_parts = parts(b3.assignment.as_ref().unwrap());
    assert_eq!(b_parts.len(), 3);
    assert!(b_parts.is_disjoint(&parts(&a_kept)));
    let b4 = beat(&c, "b", b3.member_epoch, b3.assignment.as_ref().unwrap()).unwrap();
    assert_eq!(b4.assignment, None);
    assert_eq!(c.snapshot("g").unwrap().state, ConsumerGroupState::Stable);
}

#[test]
fn a_leaving_member_frees_its_partitions_at_once() {
    let c = groups();
    let a = join(&c, "a", None);
    let _ = beat(&c, "a", a.member_epoch, a.assignment.as_ref().unwrap()).unwrap();
    let b = join(&c, "b", None);
    let g = c.get("g").unwrap();
    let left = c
        .heartbeat(
            &g,
            Heartbeat {
                group: "g".into(),
                member_id: "b".into(),
                member_epoch: LEAVE_EPOCH,
                ..Default::default()
            },
            &topics,
        )
        .unwrap();
    assert_eq!(left.member_epoch, LEAVE_EPOCH);
    assert!(b.member_epoch > a.member_epoch);
    // a is told its (unchanged) six at the new epoch, no revocation.
    let a_owned = a.assignment.clone().unwrap();
    let a2 = beat(&c, "a", a.member_epoch, &a_owned).unwrap();
    assert!(a2.member_epoch > b.member_epoch);
    assert_eq!(parts(&a_owned).len(), 6);
    assert!(a2.assignment.is_none());
}

#[test]
fn epochs_are_checked_like_kafka() {
    let c = groups();
    let a = join(&c, "a", None);
    let owned = a.assignment.clone().unwrap();
    let too_new = beat(&c, "a", a.member_epoch + 1, &owned).unwrap_err();
    assert_eq!(too_new.code(), ResponseError::FencedMemberEpoch.code());
    // A fenced client rejoins under its own id with epoch 0 (KAFKA-19233).
    let again = join(&c, "a", None);
    assert_eq!(again.member_epoch, a.member_epoch);
    assert_eq!(again.assignment, a.assignment);
    let unknown = beat(&c, "nobody", 1, &owned).unwrap_err();
    assert_eq!(unknown.code(), ResponseError::UnknownMemberId.code());
    assert_eq!(
        c.check_offsets_member("g", "a", a.member_epoch - 1),
        Some(Err(ResponseError::StaleMemberEpoch.code()))
    );
    assert_eq!(
        c.check_offsets_member("g", "a", a.member_epoch),
        Some(Ok(()))
    );
    assert_eq!(c.check_offsets_member("other", "a", 1), None);
}

#[test]
fn a_static_member_comes_back_to_its_partitions() {
    let c = groups();
    let a = join(&c, "a1", Some("inst-a"));
    let b = join(&c, "b", None);
    let _ = beat(&c, "a1", a.member_epoch, a.assignment.as_ref().unwrap()).unwrap();
    let a2 = beat(&c, "a1", a.member_epoch, &Assignment::new());
    assert!(a2.is_ok());
    let a_parts = c.snapshot("g").unwrap().members[0].assigned.clone();
    assert_eq!(parts(&a_parts).len(), 3);
    let _ = beat(&c, "b", b.member_epoch, &Assignment::new()).unwrap();
    // A second process with the same instance id while a1 is active.
    let g = c.get("g").unwrap();
    let dup = c.heartbeat(
        &g,
        Heartbeat {
            group: "g".into(),
            member_id: "a2".into(),
            member_epoch: 0,
            instance_id: Some("inst-a".into()),
            rebalance_timeout_ms: 30000,
            subscribed_topics: Some(vec!["t".into()]),
            owned: Some(Assignment::new()),
            ..Default::default()
        },
        &topics,
    );
    assert_eq!(
        dup.unwrap_err().code(),
        ResponseError::UnreleasedInstanceId.code()
    );
    // a1 leaves for a restart (-2), then comes back as a2.
    let epoch_before = c.snapshot("g").unwrap().group_epoch;
    c.heartbeat(
        &g,
        Heartbeat {
            group: "g".into(),
            member_id: "a1".into(),
            member_epoch: STATIC_LEAVE_EPOCH,
            instance_id: Some("inst-a".into()),
            ..Default::default()
        },
        &topics,
    )
    .unwrap();
    let back = join(&c, "a2", Some("inst-a"));
    assert_eq!(parts(back.assignment.as_ref().unwrap()), parts(&a_parts));
    assert_eq!(c.snapshot("g").unwrap().group_epoch, epoch_before);
}

#[test]
fn requests_are_validated_like_kafka() {
    let bad = Heartbeat {
        group: "g".into(),
        member_epoch: 0,
        rebalance_timeout_ms: 1000,
        owned: Some(Assignment::new()),
        subscribed_topics: Some(vec![]),
        ..Default::default()
    };
    assert!(matches!(
        validate(&bad),
        Err(HeartbeatError::InvalidRequest(_))
    ));
    let regex = Heartbeat {
        subscribed_topics: Some(vec!["t".into()]),
        subscribed_regex: Some("t.*".into()),
        ..bad.clone()
    };
    assert!(matches!(
        validate(&regex),
        Err(HeartbeatError::InvalidRequest(_))
    ));
    let assignor = Heartbeat {
        subscribed_topics: Some(vec!["t".into()]),
        assignor: Some("sticky".into()),
        ..bad
    };
    assert_eq!(
        validate(&assignor).unwrap_err().code(),
        ResponseError::UnsupportedAssignor.code()
    );
}

#[test]
fn the_range_assignor_on_request() {
    let c = groups();
    let g = c.get_or_create("g", None).unwrap();
    let join_range = |id: &str| {
        c.heartbeat(
            &g,
            Heartbeat {
                group: "g".into(),
                member_id: id.into(),
                member_epoch: 0,
                rebalance_timeout_ms: 30000,
                subscribed_topics: Some(vec!["t".into()]),
                assignor: Some(assignor::RANGE.into()),
                owned: Some(Assignment::new()),
                ..Default::default()
            },
            &topics,
        )
        .unwrap()
    };
    join_range("a");
    join_range("b");
    let v = c.snapshot("g").unwrap();
    assert_eq!(v.assignor, "range");
    let targets: Vec<BTreeSet<i32>> = v.members.iter().map(|m| parts(&m.target)).collect();
    assert_eq!(targets, vec![[0, 1, 2].into(), [3, 4, 5].into()]);
}
