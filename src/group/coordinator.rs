//! The classic consumer-group protocol (JoinGroup / SyncGroup / Heartbeat /
//! LeaveGroup) as Kafka's GroupCoordinator runs it: two-step join with
//! member ids (KIP-394), generations, protocol selection, rebalance and
//! session timeouts, and static membership (KIP-345).
//!
//! Each group is a state machine behind its own mutex, never held across
//! an await: waiting members park on oneshot channels that the transition
//! completing the rebalance fires. A ticker expires sessions and completes
//! rebalances whose timeout ran out.

use kafka_protocol::ResponseError;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use indexmap::IndexMap;
use tokio::sync::oneshot;

use super::consumer::{
    self, ConsumerGroupState, ConsumerGroups, ConsumerSettings, Heartbeat, HeartbeatError,
    HeartbeatOk,
};

pub const NONE: i16 = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct JoinResult {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Only for the leader: every member with its metadata for `protocol`.
    pub members: Vec<(String, Option<String>, Bytes)>,
    /// KIP-814: a returning static leader must not recompute assignments.
    pub skip_assignment: bool,
}

#[derive(Debug, Clone, Default)]
pub struct SyncResult {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub assignment: Bytes,
}

pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    last_seen: Instant,
    join_waiter: Option<oneshot::Sender<JoinResult>>,
    sync_waiter: Option<oneshot::Sender<SyncResult>>,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: IndexMap<String, Member>,
    /// KIP-394: ids handed out with MEMBER_ID_REQUIRED, not joined yet.
    pending: HashMap<String, Instant>,
    /// Static membership: group.instance.id -> current member id.
    statics: HashMap<String, String>,
    rebalance_deadline: Option<Instant>,
    /// Initial rebalance delay of a new group: no completion before this.
    hold_until: Option<Instant>,
    /// When the group last became empty (offset expiry counts from here).
    pub empty_since: Option<Instant>,
}

pub struct JoinRequest {
    pub group: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a first join without member id gets one and must retry.
    pub require_known_member_id: bool,
}

#[derive(Debug, Clone)]
pub struct GroupSettings {
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// Kafka's group.initial.rebalance.delay.ms: wait for more members of a
    /// new group before the first rebalance completes.
    pub initial_rebalance_delay_ms: u64,
    /// KIP-848's group.consumer.* settings.
    pub consumer: ConsumerSettings,
}

/// Both protocols' groups. One group id is one kind at a time: the maps
/// are always locked classic first, then consumer, never the other way.
pub struct Coordinator {
    groups: Mutex<HashMap<String, Arc<Mutex<Group>>>>,
    pub settings: GroupSettings,
    /// Groups of the consumer protocol (KIP-848).
    pub consumer: ConsumerGroups,
}

fn lock(g: &Mutex<Group>) -> MutexGuard<'_, Group> {
    g.lock().unwrap_or_else(|p| p.into_inner())
}

fn new_member_id(client_id: &str, instance: Option<&str>) -> String {
    let prefix = instance.unwrap_or(if client_id.is_empty() {
        "member"
    } else {
        client_id
    });
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

impl Group {
    fn new(id: &str) -> Group {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: IndexMap::new(),
            pending: HashMap::new(),
            statics: HashMap::new(),
            rebalance_deadline: None,
            hold_until: None,
            empty_since: Some(Instant::now()),
        }
    }

    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        // At least one protocol every current member also supports.
        protocols.iter().any(|(p, _)| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(q, _)| q == p))
        })
    }

    fn select_protocol(&self) -> Option<String> {
        let mut candidates: Vec<&String> = match self.members.values().next() {
            Some(m) => m.protocols.iter().map(|(n, _)| n).collect(),
            None => return None,
        };
        candidates.retain(|c| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(n, _)| n == *c))
        });
        // Each member votes for its most preferred candidate.
        let mut votes: HashMap<&String, usize> = HashMap::new();
        for m in self.members.values() {
            if let Some((n, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(&n)) {
                *votes.entry(n).or_default() += 1;
            }
        }
        candidates
            .into_iter()
            .max_by_key(|c| votes.get(c).copied().unwrap_or(0))
            .cloned()
    }

    fn max_rebalance_timeout(&self) -> Duration {
        self.members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::from_secs(60))
    }

    /// Moves to PreparingRebalance: every member has to join again.
    fn prepare_rebalance(&mut self, delay: Option<Duration>) {
        if self.state == GroupState::CompletingRebalance {
            // Followers waiting for their assignment must rejoin.
            for m in self.members.values_mut() {
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(SyncResult {
                        error: ResponseError::RebalanceInProgress.code(),
                        ..Default::default()
                    });
                }
            }
        }
        if self.state != GroupState::PreparingRebalance {
            let wait = delay.unwrap_or_else(|| self.max_rebalance_timeout());
            self.rebalance_deadline = Some(Instant::now() + wait);
            self.state = GroupState::PreparingRebalance;
        }
    }

    /// A join answered without a rebalance: the generation in force.
    fn current_generation(
        &self,
        member_id: String,
        members: Vec<(String, Option<String>, Bytes)>,
        skip_assignment: bool,
    ) -> JoinResult {
        JoinResult {
            error: NONE,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id,
            members,
            skip_assignment,
        }
    }

    fn all_joined(&self) -> bool {
        !self.members.is_empty() && self.members.values().all(|m| m.join_waiter.is_some())
    }

    fn ready_to_complete(&self, now: Instant) -> bool {
        self.all_joined() && self.hold_until.is_none_or(|h| now >= h)
    }

    /// Ends the join phase: drops members that did not rejoin, bumps the
    /// generation, picks the protocol and the leader, answers every waiter.
    fn complete_join(&mut self) {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id);
        }
        self.rebalance_deadline = None;
        self.hold_until = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            self.empty_since = Some(Instant::now());
            return;
        }
        self.protocol = self.select_protocol();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        let leader = self.leader.clone().unwrap_or_default();
        let protocol = self.protocol.clone().unwrap_or_default();
        let all: Vec<(String, Option<String>, Bytes)> = self
            .members
            .values()
            .map(|m| {
                (
                    m.id.clone(),
                    m.instance_id.clone(),
                    m.metadata_for(&protocol),
                )
            })
            .collect();
        self.state = GroupState::CompletingRebalance;
        let now = Instant::now();
        for m in self.members.values_mut() {
            m.assignment = Bytes::new();
            m.last_seen = now;
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinResult {
                    error: NONE,
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol: self.protocol.clone(),
                    leader: leader.clone(),
                    member_id: m.id.clone(),
                    members: if m.id == leader {
                        all.clone()
                    } else {
                        Vec::new()
                    },
                    skip_assignment: false,
                });
            }
        }
    }

    fn remove_member(&mut self, id: &str) -> Option<Member> {
        let m = self.members.shift_remove(id)?;
        if let Some(inst) = &m.instance_id {
            if self.statics.get(inst).is_some_and(|cur| cur == id) {
                self.statics.remove(inst);
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
        Some(m)
    }

    /// After members left or expired: rebalance, or become empty.
    fn after_departure(&mut self) {
        if self.members.is_empty() {
            if self.state == GroupState::PreparingRebalance {
                self.complete_join();
            } else {
                self.state = GroupState::Empty;
                self.protocol = None;
                self.leader = None;
                self.generation += 1;
                self.empty_since = Some(Instant::now());
            }
            return;
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => self.prepare_rebalance(None),
            GroupState::PreparingRebalance if self.ready_to_complete(Instant::now()) => {
                self.complete_join()
            }
            _ => {}
        }
    }

    fn describe_member(&self, id: &str) -> Option<&Member> {
        self.members.get(id)
    }
}

pub enum JoinOutcome {
    Now(JoinResult),
    Wait(oneshot::Receiver<JoinResult>, Duration),
}

impl Coordinator {
    pub fn new(settings: GroupSettings) -> Arc<Coordinator> {
        Arc::new(Coordinator {
            groups: Mutex::new(HashMap::new()),
            consumer: ConsumerGroups::new(settings.consumer.clone()),
            settings,
        })
    }

    /// A classic group, created if absent: an empty consumer group of the
    /// id gives way, one with members refuses (INCONSISTENT_GROUP_PROTOCOL).
    fn get_or_create(&self, id: &str) -> Result<Arc<Mutex<Group>>, i16> {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(g) = groups.get(id) {
            return Ok(g.clone());
        }
        self.consumer.yield_to_classic(id)?;
        Ok(groups
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(Mutex::new(Group::new(id))))
            .clone())
    }

    /// ConsumerGroupHeartbeat (KIP-848). `topics(name)`: the partition
    /// count of an existing topic. A join may take over the id of an empty
    /// classic group (Kafka converts it); a classic group with members
    /// answers GROUP_ID_NOT_FOUND, as Kafka's "not a consumer group".
    pub fn consumer_heartbeat(
        &self,
        hb: Heartbeat,
        topics: &dyn Fn(&str) -> Option<i32>,
    ) -> Result<HeartbeatOk, HeartbeatError> {
        consumer::validate(&hb)?;
        let g = {
            let mut classic = self.groups.lock().unwrap_or_else(|p| p.into_inner());
            let classic_empty = classic
                .get(&hb.group)
                .map(|g| lock(g).state == GroupState::Empty);
            if hb.member_epoch == consumer::JOIN_EPOCH {
                if classic_empty == Some(true) {
                    classic.remove(&hb.group);
                }
                self.consumer.get_or_create(&hb.group, classic_empty)?
            } else {
                match self.consumer.get(&hb.group) {
                    Some(g) => g,
                    None if classic_empty.is_some() => {
                        return Err(HeartbeatError::NotConsumerGroup(hb.group.clone()))
                    }
                    // Kafka says GROUP_ID_NOT_FOUND here, but a Kafka
                    // group outlives a coordinator restart and ours does
                    // not: UNKNOWN_MEMBER_ID makes the member rejoin (with
                    // epoch 0, which recreates the group), as it must.
                    None => return Err(HeartbeatError::UnknownMember(hb.member_id.clone())),
                }
            }
        };
        self.consumer.heartbeat(&g, hb, topics)
    }

    pub fn get(&self, id: &str) -> Option<Arc<Mutex<Group>>> {
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Every group of either protocol.
    pub fn group_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        ids.extend(self.consumer.group_ids());
        ids
    }

    /// Removes an empty group entirely (DeleteGroups), of either protocol.
    pub fn delete_if_empty(&self, id: &str) -> Result<(), GroupState> {
        match self.consumer.delete_if_empty(id) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(ConsumerGroupState::Empty) => return Err(GroupState::Empty),
            Err(_) => return Err(GroupState::Stable),
        }
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(g) = groups.get(id) {
            let state = lock(g).state;
            if state != GroupState::Empty {
                return Err(state);
            }
            groups.remove(id);
        }
        Ok(())
    }

    pub fn join(&self, req: JoinRequest) -> JoinOutcome {
        let err = |e: i16, member_id: String| {
            JoinOutcome::Now(JoinResult {
                error: e,
                generation: -1,
                member_id,
                ..Default::default()
            })
        };
        let s = &self.settings;
        if req.session_timeout_ms < s.min_session_timeout_ms
            || req.session_timeout_ms > s.max_session_timeout_ms
        {
            return err(ResponseError::InvalidSessionTimeout.code(), req.member_id);
        }
        if req.protocol_type.is_empty() || req.protocols.is_empty() {
            return err(
                ResponseError::InconsistentGroupProtocol.code(),
                req.member_id,
            );
        }
        let g = match self.get_or_create(&req.group) {
            Ok(g) => g,
            Err(code) => return err(code, req.member_id),
        };
        let mut g = lock(&g);
        if !g.supports(&req.protocol_type, &req.protocols) {
            return err(
                ResponseError::InconsistentGroupProtocol.code(),
                req.member_id,
            );
        }
        let now = Instant::now();
        let session = Duration::from_millis(req.session_timeout_ms.max(0) as u64);
        let rebalance = Duration::from_millis(
            req.rebalance_timeout_ms.max(req.session_timeout_ms).max(0) as u64,
        );

        let mut member_id = req.member_id.clone();
        if member_id.is_empty() {
            if let Some(inst) = &req.instance_id {
                // Static member coming back (KIP-345): it takes over its old
                // slot under a new member id.
                member_id = new_member_id(&req.client_id, Some(inst));
                if let Some(old) = g.statics.get(inst).cloned() {
                    if let Some(mut m) = g.remove_member_keep_static(&old) {
                        // Kafka only rebalances a returning static member if
                        // the group's protocol would change; its metadata
                        // (e.g. cooperative owned partitions) may differ.
                        let unchanged = g
                            .protocol
                            .as_ref()
                            .is_none_or(|p| req.protocols.iter().any(|(n, _)| n == p));
                        m.id = member_id.clone();
                        m.protocols = req.protocols.clone();
                        m.session_timeout = session;
                        m.rebalance_timeout = rebalance;
                        m.last_seen = now;
                        if let Some(w) = m.join_waiter.take() {
                            let _ = w.send(JoinResult {
                                error: ResponseError::FencedInstanceId.code(),
                                generation: -1,
                                ..Default::default()
                            });
                        }
                        let was_leader = g.leader.as_deref() == Some(old.as_str());
                        if was_leader {
                            g.leader = Some(member_id.clone());
                        }
                        g.members.insert(member_id.clone(), m);
                        g.statics.insert(inst.clone(), member_id.clone());
                        if g.state == GroupState::Stable && unchanged {
                            // No rebalance: hand back the current generation;
                            // SyncGroup returns the kept assignment. A
                            // returning leader gets the member list but is
                            // told not to reassign.
                            let protocol = g.protocol.clone().unwrap_or_default();
                            let members = if was_leader {
                                g.members
                                    .values()
                                    .map(|m| {
                                        (
                                            m.id.clone(),
                                            m.instance_id.clone(),
                                            m.metadata_for(&protocol),
                                        )
                                    })
                                    .collect()
                            } else {
                                Vec::new()
                            };
                            return JoinOutcome::Now(
                                g.current_generation(member_id, members, was_leader),
                            );
                        }
                        return self.enter_join(&mut g, &member_id, now);
                    }
                }
            } else {
                member_id = new_member_id(&req.client_id, None);
                if req.require_known_member_id {
                    g.pending.insert(member_id.clone(), now);
                    return err(ResponseError::MemberIdRequired.code(), member_id);
                }
            }
        } else if g.static_fenced(&member_id, req.instance_id.as_deref()) {
            return err(ResponseError::FencedInstanceId.code(), member_id);
        } else if !g.members.contains_key(&member_id) && g.pending.remove(&member_id).is_none() {
            return err(ResponseError::UnknownMemberId.code(), member_id);
        }

        if let Some(m) = g.members.get_mut(&member_id) {
            let unchanged = m.protocols == req.protocols;
            m.protocols = req.protocols.clone();
            m.session_timeout = session;
            m.rebalance_timeout = rebalance;
            m.last_seen = now;
            let is_leader = g.leader.as_deref() == Some(member_id.as_str());
            if g.state == GroupState::Stable && unchanged && !is_leader {
                return JoinOutcome::Now(g.current_generation(member_id, Vec::new(), false));
            }
        } else {
            if g.members.is_empty() {
                g.protocol_type = Some(req.protocol_type.clone());
            }
            if let Some(inst) = &req.instance_id {
                g.statics.insert(inst.clone(), member_id.clone());
            }
            g.members.insert(
                member_id.clone(),
                Member {
                    id: member_id.clone(),
                    instance_id: req.instance_id.clone(),
                    client_id: req.client_id.clone(),
                    client_host: req.client_host.clone(),
                    session_timeout: session,
                    rebalance_timeout: rebalance,
                    protocols: req.protocols.clone(),
                    assignment: Bytes::new(),
                    last_seen: now,
                    join_waiter: None,
                    sync_waiter: None,
                },
            );
            g.empty_since = None;
        }
        self.enter_join(&mut g, &member_id, now)
    }

    fn enter_join(&self, g: &mut Group, member_id: &str, now: Instant) -> JoinOutcome {
        let (tx, rx) = oneshot::channel();
        let wait = g
            .members
            .get(member_id)
            .map(|m| m.rebalance_timeout)
            .unwrap_or_default();
        if let Some(m) = g.members.get_mut(member_id) {
            if let Some(old) = m.join_waiter.replace(tx) {
                let _ = old.send(JoinResult {
                    error: ResponseError::RebalanceInProgress.code(),
                    generation: -1,
                    ..Default::default()
                });
            }
            m.last_seen = now;
        }
        if g.state == GroupState::Empty && self.settings.initial_rebalance_delay_ms > 0 {
            // A brand-new group waits a moment for more members, so that a
            // fleet starting together rebalances once, not once per member.
            g.hold_until =
                Some(now + Duration::from_millis(self.settings.initial_rebalance_delay_ms));
        }
        g.prepare_rebalance(None);
        if g.ready_to_complete(now) {
            g.complete_join();
        }
        JoinOutcome::Wait(rx, wait + Duration::from_secs(5))
    }

    pub fn sync(
        &self,
        group: &str,
        generation: i32,
        member_id: &str,
        instance: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> Result<SyncResult, oneshot::Receiver<SyncResult>> {
        let fail = |error: i16| {
            Ok(SyncResult {
                error,
                ..Default::default()
            })
        };
        let Some(g) = self.get(group) else {
            return fail(ResponseError::UnknownMemberId.code());
        };
        let mut g = lock(&g);
        if g.static_fenced(member_id, instance) {
            return fail(ResponseError::FencedInstanceId.code());
        }
        if !g.members.contains_key(member_id) {
            return fail(ResponseError::UnknownMemberId.code());
        }
        if generation != g.generation {
            return fail(ResponseError::IllegalGeneration.code());
        }
        let ok = |g: &Group, assignment: Bytes| SyncResult {
            error: NONE,
            protocol_type: g.protocol_type.clone(),
            protocol: g.protocol.clone(),
            assignment,
        };
        match g.state {
            GroupState::Empty => fail(ResponseError::UnknownMemberId.code()),
            GroupState::PreparingRebalance => fail(ResponseError::RebalanceInProgress.code()),
            GroupState::Stable => {
                let a = g
                    .members
                    .get(member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default();
                if let Some(m) = g.members.get_mut(member_id) {
                    m.last_seen = Instant::now();
                }
                Ok(ok(&g, a))
            }
            GroupState::CompletingRebalance => {
                if g.leader.as_deref() == Some(member_id) {
                    let map: HashMap<String, Bytes> = assignments.into_iter().collect();
                    let proto = (g.protocol_type.clone(), g.protocol.clone());
                    for m in g.members.values_mut() {
                        m.assignment = map.get(&m.id).cloned().unwrap_or_default();
                        if let Some(w) = m.sync_waiter.take() {
                            let _ = w.send(SyncResult {
                                error: NONE,
                                protocol_type: proto.0.clone(),
                                protocol: proto.1.clone(),
                                assignment: m.assignment.clone(),
                            });
                        }
                    }
                    g.state = GroupState::Stable;
                    let a = g
                        .members
                        .get(member_id)
                        .map(|m| m.assignment.clone())
                        .unwrap_or_default();
                    Ok(ok(&g, a))
                } else {
                    let (tx, rx) = oneshot::channel();
                    if let Some(m) = g.members.get_mut(member_id) {
                        m.sync_waiter = Some(tx);
                        m.last_seen = Instant::now();
                    }
                    Err(rx)
                }
            }
        }
    }

    pub fn heartbeat(
        &self,
        group: &str,
        generation: i32,
        member_id: &str,
        instance: Option<&str>,
    ) -> i16 {
        let Some(g) = self.get(group) else {
            return ResponseError::UnknownMemberId.code();
        };
        let mut g = lock(&g);
        if g.static_fenced(member_id, instance) {
            return ResponseError::FencedInstanceId.code();
        }
        let state = g.state;
        let current = g.generation;
        let Some(m) = g.members.get_mut(member_id) else {
            return ResponseError::UnknownMemberId.code();
        };
        m.last_seen = Instant::now();
        match state {
            GroupState::PreparingRebalance => ResponseError::RebalanceInProgress.code(),
            _ if generation != current => ResponseError::IllegalGeneration.code(),
            GroupState::Empty => ResponseError::UnknownMemberId.code(),
            _ => NONE,
        }
    }

    /// Removes members by id, or by instance id for static members.
    pub fn leave(&self, group: &str, members: &[(String, Option<String>)]) -> Vec<i16> {
        let Some(g) = self.get(group) else {
            return members
                .iter()
                .map(|_| ResponseError::UnknownMemberId.code())
                .collect();
        };
        let mut g = lock(&g);
        let mut codes = Vec::with_capacity(members.len());
        let mut any = false;
        for (id, inst) in members {
            let target = match inst {
                Some(i) => match g.statics.get(i).cloned() {
                    Some(cur) if id.is_empty() || *id == cur => Some(cur),
                    Some(_) => {
                        codes.push(ResponseError::FencedInstanceId.code());
                        continue;
                    }
                    None => None,
                },
                None => Some(id.clone()),
            };
            match target.and_then(|t| g.remove_member(&t)) {
                Some(mut m) => {
                    if let Some(w) = m.join_waiter.take() {
                        let _ = w.send(JoinResult {
                            error: ResponseError::UnknownMemberId.code(),
                            generation: -1,
                            ..Default::default()
                        });
                    }
                    any = true;
                    codes.push(NONE);
                }
                None => codes.push(ResponseError::UnknownMemberId.code()),
            }
        }
        if any {
            g.after_departure();
        }
        codes
    }

    /// Expires silent members and completes rebalances that timed out.
    pub fn tick(&self) {
        self.consumer.tick();
        let now = Instant::now();
        let groups: Vec<Arc<Mutex<Group>>> = self
            .groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for g in groups {
            let mut g = lock(&g);
            g.pending
                .retain(|_, t| now.duration_since(*t) < Duration::from_secs(300));
            let expired: Vec<String> = g
                .members
                .values()
                .filter(|m| {
                    m.join_waiter.is_none() && now.duration_since(m.last_seen) > m.session_timeout
                })
                .map(|m| m.id.clone())
                .collect();
            if !expired.is_empty() {
                for id in &expired {
                    tracing::info!(group = %g.id, member = %id, "member session expired");
                    g.remove_member(id);
                }
                g.after_departure();
            }
            if g.state == GroupState::PreparingRebalance
                && (g.ready_to_complete(now) || g.rebalance_deadline.is_some_and(|d| now >= d))
            {
                g.complete_join();
            }
        }
    }

    pub fn spawn_ticker(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut t = tokio::time::interval(Duration::from_millis(100));
            loop {
                t.tick().await;
                let Some(c) = weak.upgrade() else { return };
                c.tick();
            }
        })
    }

    /// A read-only view for DescribeGroups / ListGroups / the CLI.
    /// A consumer-protocol group shows as protocol type "consumer" with its
    /// members (no metadata: that is the classic protocol's), Empty or
    /// Stable, so that expiry and deletion treat both kinds alike.
    pub fn snapshot(&self, id: &str) -> Option<GroupView> {
        if let Some(v) = self.consumer.snapshot(id) {
            return Some(GroupView {
                id: v.id,
                state: if v.state == ConsumerGroupState::Empty {
                    GroupState::Empty
                } else {
                    GroupState::Stable
                },
                generation: v.group_epoch,
                protocol_type: "consumer".into(),
                protocol: v.assignor,
                members: v
                    .members
                    .into_iter()
                    .map(|m| MemberView {
                        id: m.id,
                        instance_id: m.instance_id,
                        client_id: m.client_id,
                        client_host: m.client_host,
                        metadata: Bytes::new(),
                        assignment: Bytes::new(),
                    })
                    .collect(),
                empty_for: v.empty_for,
            });
        }
        let g = self.get(id)?;
        let g = lock(&g);
        Some(GroupView {
            id: g.id.clone(),
            state: g.state,
            generation: g.generation,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: g.protocol.clone().unwrap_or_default(),
            members: g
                .members
                .values()
                .map(|m| MemberView {
                    id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: m.metadata_for(g.protocol.as_deref().unwrap_or_default()),
                    assignment: m.assignment.clone(),
                })
                .collect(),
            empty_for: g.empty_since.map(|t| t.elapsed()),
        })
    }

    /// Is `member_id` (of static instance `instance`, if any) in `group` at
    /// `generation` (OffsetCommit's check)?
    pub fn check_member(
        &self,
        group: &str,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> Result<(), i16> {
        if let Some(r) = self
            .consumer
            .check_offsets_member(group, member_id, generation)
        {
            return r;
        }
        let Some(g) = self.get(group) else {
            return if generation < 0 {
                Ok(())
            } else {
                Err(ResponseError::IllegalGeneration.code())
            };
        };
        let g = lock(&g);
        if generation < 0 && member_id.is_empty() {
            // A "simple" commit from a consumer outside the group protocol.
            return if g.state == GroupState::Empty {
                Ok(())
            } else {
                Err(ResponseError::UnknownMemberId.code())
            };
        }
        if g.static_fenced(member_id, instance) {
            return Err(ResponseError::FencedInstanceId.code());
        }
        if g.describe_member(member_id).is_none() {
            return Err(ResponseError::UnknownMemberId.code());
        }
        if generation != g.generation {
            return Err(ResponseError::IllegalGeneration.code());
        }
        if matches!(
            g.state,
            GroupState::PreparingRebalance | GroupState::CompletingRebalance
        ) {
            return Err(ResponseError::RebalanceInProgress.code());
        }
        Ok(())
    }
}

impl Group {
    /// KIP-345: a request from a static member whose instance now maps to
    /// another member id (a newer client of the same `group.instance.id`
    /// took its place) is fenced as Kafka fences it, with
    /// FENCED_INSTANCE_ID, fatal for the old client: two processes with one
    /// instance id never take turns owning its partitions.
    fn static_fenced(&self, member_id: &str, instance: Option<&str>) -> bool {
        instance.is_some_and(|i| self.statics.get(i).is_some_and(|cur| cur != member_id))
    }

    /// Removes a member but keeps its static-instance mapping (it is about
    /// to be re-inserted under a new id).
    fn remove_member_keep_static(&mut self, id: &str) -> Option<Member> {
        self.members.shift_remove(id)
    }
}

#[derive(Debug, Clone)]
pub struct MemberView {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone)]
pub struct GroupView {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberView>,
    pub empty_for: Option<Duration>,
}

/// Used by tests and the CLI: groups known only by their offsets.
pub fn known_groups(c: &Coordinator, with_offsets: Vec<String>) -> Vec<String> {
    let mut set: HashSet<String> = c.group_ids().into_iter().collect();
    set.extend(with_offsets);
    let mut v: Vec<String> = set.into_iter().collect();
    v.sort();
    v
}
