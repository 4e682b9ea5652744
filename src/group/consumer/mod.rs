//! The consumer group protocol of KIP-848 (ConsumerGroupHeartbeat,
//! ConsumerGroupDescribe) as Kafka 4's GroupMetadataManager runs it: the
//! coordinator computes a target assignment per group epoch with a server
//! side assignor (`assignor.rs`) and moves each member to it incrementally
//! (`reconcile.rs`): a partition changes hands only after its previous
//! owner's heartbeat shows it revoked, and partitions that do not move are
//! never revoked (no stop-the-world rebalance).
//!
//! Groups and members live in memory: after a broker restart members get
//! UNKNOWN_MEMBER_ID and rejoin (as Kafka clients do for a lost
//! coordinator); committed offsets are in the shared offset store and
//! survive. Each group is behind its own mutex, never held across an await.

pub mod assignor;
pub mod reconcile;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;

use assignor::{Assignment, Subscriber};
use reconcile::{MemberState, Position};

/// Member epochs with a meaning of their own in a heartbeat.
pub const JOIN_EPOCH: i32 = 0;
pub const LEAVE_EPOCH: i32 = -1;
pub const STATIC_LEAVE_EPOCH: i32 = -2;

/// Kafka's group.consumer.* settings.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    pub heartbeat_interval_ms: i32,
    pub session_timeout_ms: i32,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        ConsumerSettings {
            heartbeat_interval_ms: 5000,
            session_timeout_ms: 45000,
        }
    }
}

/// Why a heartbeat is refused, with Kafka's code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeartbeatError {
    #[error("{0}")]
    InvalidRequest(&'static str),
    #[error("ServerAssignor {0} is not supported. Supported assignors: uniform, range.")]
    UnsupportedAssignor(String),
    #[error("Group {0} is not a consumer group.")]
    NotConsumerGroup(String),
    #[error("Member {0} is not a member of the group.")]
    UnknownMember(String),
    #[error("The consumer group member has epoch {received} while the coordinator has {known}. The member must abandon all its partitions and rejoin.")]
    FencedEpoch { received: i32, known: i32 },
    #[error("The instance id {0} is still used by another member of the group.")]
    UnreleasedInstance(String),
    #[error("Static member with instance id {0} is fenced by another member.")]
    FencedInstance(String),
}

impl HeartbeatError {
    pub fn code(&self) -> i16 {
        match self {
            HeartbeatError::InvalidRequest(_) => ResponseError::InvalidRequest.code(),
            HeartbeatError::UnsupportedAssignor(_) => ResponseError::UnsupportedAssignor.code(),
            HeartbeatError::NotConsumerGroup(_) => ResponseError::GroupIdNotFound.code(),
            HeartbeatError::UnknownMember(_) => ResponseError::UnknownMemberId.code(),
            HeartbeatError::FencedEpoch { .. } => ResponseError::FencedMemberEpoch.code(),
            HeartbeatError::UnreleasedInstance(_) => ResponseError::UnreleasedInstanceId.code(),
            HeartbeatError::FencedInstance(_) => ResponseError::FencedInstanceId.code(),
        }
    }
}

/// A ConsumerGroupHeartbeat, with topic ids already turned into names
/// (unknown ids into names no topic has, so they never match).
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    pub group: String,
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub subscribed_topics: Option<Vec<String>>,
    pub subscribed_regex: Option<String>,
    pub assignor: Option<String>,
    pub owned: Option<Assignment>,
    pub client_id: String,
    pub client_host: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatOk {
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// Sent on a full request or when the member's partitions changed.
    pub assignment: Option<Assignment>,
}

/// Kafka's ConsumerGroupState.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerGroupState {
    Empty,
    Assigning,
    Reconciling,
    Stable,
}

impl ConsumerGroupState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsumerGroupState::Empty => "Empty",
            ConsumerGroupState::Assigning => "Assigning",
            ConsumerGroupState::Reconciling => "Reconciling",
            ConsumerGroupState::Stable => "Stable",
        }
    }
}

struct Member {
    id: String,
    instance_id: Option<String>,
    rack_id: Option<String>,
    client_id: String,
    client_host: String,
    rebalance_timeout: Duration,
    subscribed: BTreeSet<String>,
    assignor: Option<String>,
    pos: Position,
    last_seen: Instant,
    /// Set while it has partitions to revoke: fenced when it passes.
    revocation_deadline: Option<Instant>,
}

impl Member {
    fn reconciled_to(&self, epoch: i32) -> bool {
        self.pos.state == MemberState::Stable && self.pos.epoch == epoch
    }
}

pub struct ConsumerGroup {
    id: String,
    group_epoch: i32,
    assignment_epoch: i32,
    members: BTreeMap<String, Member>,
    /// group.instance.id -> member id.
    statics: HashMap<String, String>,
    /// Member id -> target assignment at `assignment_epoch`.
    target: HashMap<String, Assignment>,
    /// Partitions held or being revoked -> the holder's member id.
    owners: HashMap<(String, i32), String>,
    /// Subscribed topics that exist, with their partition counts.
    metadata: BTreeMap<String, i32>,
    assignor: String,
    empty_since: Option<Instant>,
}

fn lock(g: &Mutex<ConsumerGroup>) -> MutexGuard<'_, ConsumerGroup> {
    g.lock().unwrap_or_else(|p| p.into_inner())
}

impl ConsumerGroup {
    fn new(id: &str) -> ConsumerGroup {
        ConsumerGroup {
            id: id.to_string(),
            group_epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            statics: HashMap::new(),
            target: HashMap::new(),
            owners: HashMap::new(),
            metadata: BTreeMap::new(),
            assignor: assignor::UNIFORM.to_string(),
            empty_since: Some(Instant::now()),
        }
    }

    pub fn state(&self) -> ConsumerGroupState {
        if self.members.is_empty() {
            ConsumerGroupState::Empty
        } else if self.group_epoch > self.assignment_epoch {
            ConsumerGroupState::Assigning
        } else if self
            .members
            .values()
            .any(|m| !m.reconciled_to(self.assignment_epoch))
        {
            ConsumerGroupState::Reconciling
        } else {
            ConsumerGroupState::Stable
        }
    }

    /// Records `pos` as the member's, keeping the owners map in step.
    fn set_position(&mut self, member_id: &str, pos: Position) {
        let Some(m) = self.members.get_mut(member_id) else {
            return;
        };
        for (t, ps) in m.pos.assigned.iter().chain(m.pos.pending_revocation.iter()) {
            for p in ps {
                let key = (t.clone(), *p);
                if self.owners.get(&key).is_some_and(|o| o == member_id) {
                    self.owners.remove(&key);
                }
            }
        }
        for (t, ps) in pos.assigned.iter().chain(pos.pending_revocation.iter()) {
            for p in ps {
                self.owners.insert((t.clone(), *p), member_id.to_string());
            }
        }
        m.pos = pos;
    }

    fn remove_member(&mut self, member_id: &str) {
        self.set_position(
            member_id,
            Position {
                state: MemberState::Stable,
                epoch: 0,
                previous_epoch: 0,
                assigned: Assignment::new(),
                pending_revocation: Assignment::new(),
            },
        );
        if let Some(m) = self.members.remove(member_id) {
            if let Some(i) = &m.instance_id {
                if self.statics.get(i).is_some_and(|cur| cur == member_id) {
                    self.statics.remove(i);
                }
            }
        }
        self.target.remove(member_id);
        if self.members.is_empty() {
            self.empty_since = Some(Instant::now());
        }
    }

    /// Fences a member (leave, session or revocation timeout): its
    /// partitions are free at once and the group moves to a new epoch.
    /// The partition counts stay as they were: the next heartbeat looks
    /// the topics up again.
    fn fence(&mut self, member_id: &str) {
        self.remove_member(member_id);
        self.bump_epoch();
    }

    /// Kafka picks the assignor most members ask for, else the default.
    fn pick_assignor(&self) -> String {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = &m.assignor {
                *votes.entry(a.as_str()).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by_key(|(name, n)| (*n, std::cmp::Reverse(*name)))
            .map(|(name, _)| name.to_string())
            .unwrap_or_else(|| assignor::UNIFORM.to_string())
    }

    /// Whether the subscribed topics' partition counts changed.
    fn refresh_metadata(&mut self, topics: &dyn Fn(&str) -> Option<i32>) -> bool {
        let subscribed: BTreeSet<&String> = self
            .members
            .values()
            .flat_map(|m| m.subscribed.iter())
            .collect();
        let fresh: BTreeMap<String, i32> = subscribed
            .into_iter()
            .filter_map(|t| topics(t).map(|c| (t.clone(), c)))
            .collect();
        let changed = fresh != self.metadata;
        self.metadata = fresh;
        changed
    }

    /// A new group epoch and its target assignment.
    fn bump_epoch(&mut self) {
        self.group_epoch += 1;
        self.assignor = self.pick_assignor();
        let subs: Vec<Subscriber<'_>> = self
            .members
            .values()
            .map(|m| Subscriber {
                id: &m.id,
                topics: &m.subscribed,
                previous: self.target.get(&m.id),
            })
            .collect();
        let target = assignor::assign(&self.assignor, &subs, &self.metadata);
        self.target = target;
        self.assignment_epoch = self.group_epoch;
        tracing::info!(group = %self.id, epoch = self.group_epoch, assignor = %self.assignor,
            members = self.members.len(), "consumer group epoch bumped");
    }

    /// Moves a member one step towards its target (Kafka's maybeReconcile).
    fn reconcile(&mut self, member_id: &str, owned: Option<&Assignment>, now: Instant) {
        let Some(m) = self.members.get(member_id) else {
            return;
        };
        if m.reconciled_to(self.assignment_epoch) {
            return;
        }
        let empty = Assignment::new();
        let target = self.target.get(member_id).unwrap_or(&empty);
        let owners = &self.owners;
        let taken = |t: &str, p: i32| {
            owners
                .get(&(t.to_string(), p))
                .is_some_and(|o| o != member_id)
        };
        let next = reconcile::next(&m.pos, self.assignment_epoch, target, owned, &taken);
        if next == m.pos {
            return;
        }
        let revoking = next.state == MemberState::UnrevokedPartitions;
        let deadline = now + m.rebalance_timeout;
        self.set_position(member_id, next);
        if let Some(m) = self.members.get_mut(member_id) {
            m.revocation_deadline = revoking.then_some(deadline);
        }
    }

    /// Checks the epoch a member sent (Kafka's
    /// throwIfConsumerGroupMemberEpochIsInvalid): an older epoch is fine
    /// only if it is the previous one and the member owns no more than
    /// its current partitions (the answer with the new epoch was lost).
    fn check_epoch(
        m: &Member,
        received: i32,
        owned: Option<&Assignment>,
    ) -> Result<(), HeartbeatError> {
        // A fenced client rejoins with epoch 0 under its own member id
        // (KIP-1082 ids are the client's): Kafka accepts that (KAFKA-19233,
        // 4.2) rather than fencing it again and again.
        if received == JOIN_EPOCH {
            return Ok(());
        }
        let fenced = HeartbeatError::FencedEpoch {
            received,
            known: m.pos.epoch,
        };
        if received > m.pos.epoch {
            return Err(fenced);
        }
        if received < m.pos.epoch {
            let subset = owned.is_some_and(|o| {
                o.iter().all(|(t, ps)| {
                    m.pos
                        .assigned
                        .get(t)
                        .is_some_and(|a| ps.iter().all(|p| a.contains(p)))
                        || ps.is_empty()
                })
            });
            if received != m.pos.previous_epoch || !subset {
                return Err(fenced);
            }
        }
        Ok(())
    }
}

/// Kafka's throwIfConsumerGroupHeartbeatRequestIsInvalid.
pub fn validate(hb: &Heartbeat) -> Result<(), HeartbeatError> {
    use HeartbeatError::InvalidRequest as Bad;
    if hb.group.is_empty() {
        return Err(Bad("GroupId can't be empty."));
    }
    if hb.instance_id.as_deref() == Some("") {
        return Err(Bad("InstanceId can't be empty."));
    }
    if hb.rack_id.as_deref() == Some("") {
        return Err(Bad("RackId can't be empty."));
    }
    if hb.subscribed_regex.is_some() {
        return Err(Bad("SubscribedTopicRegex is not supported by this broker."));
    }
    match hb.member_epoch {
        e if e > 0 || e == LEAVE_EPOCH => {
            if hb.member_id.is_empty() {
                return Err(Bad("MemberId can't be empty."));
            }
        }
        JOIN_EPOCH => {
            if hb.rebalance_timeout_ms == -1 {
                return Err(Bad("RebalanceTimeoutMs must be provided in first request."));
            }
            if hb
                .owned
                .as_ref()
                .is_none_or(|o| o.values().any(|p| !p.is_empty()))
            {
                return Err(Bad("TopicPartitions must be empty when (re-)joining."));
            }
            if hb.subscribed_topics.as_ref().is_none_or(|t| t.is_empty()) {
                return Err(Bad("SubscribedTopicNames must be set in first request."));
            }
        }
        STATIC_LEAVE_EPOCH => {
            if hb.member_id.is_empty() {
                return Err(Bad("MemberId can't be empty."));
            }
            if hb.instance_id.is_none() {
                return Err(Bad("InstanceId can't be null."));
            }
        }
        _ => return Err(Bad("MemberEpoch is invalid.")),
    }
    if let Some(a) = &hb.assignor {
        if !assignor::known(a) {
            return Err(HeartbeatError::UnsupportedAssignor(a.clone()));
        }
    }
    Ok(())
}

/// A group's own settings: its group configs (`consumer.session.timeout.ms`,
/// `consumer.heartbeat.interval.ms`) over the broker's.
pub type SettingsOf = Arc<dyn Fn(&str) -> ConsumerSettings + Send + Sync>;

/// Every consumer-protocol group of this broker.
pub struct ConsumerGroups {
    groups: Mutex<HashMap<String, Arc<Mutex<ConsumerGroup>>>>,
    /// The broker-wide settings (Kafka's `group.consumer.*`).
    pub settings: ConsumerSettings,
    /// Per-group settings, once the broker wires its group configs in.
    settings_of: std::sync::OnceLock<SettingsOf>,
}

impl ConsumerGroups {
    pub fn new(settings: ConsumerSettings) -> ConsumerGroups {
        ConsumerGroups {
            groups: Mutex::new(HashMap::new()),
            settings,
            settings_of: std::sync::OnceLock::new(),
        }
    }

    /// Takes each group's settings from `f` from now on (set once, at start).
    pub fn use_group_settings(&self, f: SettingsOf) {
        let _ = self.settings_of.set(f);
    }

    /// The settings `group` runs with now: a changed group config applies
    /// to its next heartbeat and the next session check.
    fn settings_for(&self, group: &str) -> ConsumerSettings {
        match self.settings_of.get() {
            Some(f) => f(group),
            None => self.settings.clone(),
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<Mutex<ConsumerGroup>>>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, id: &str) -> Option<Arc<Mutex<ConsumerGroup>>> {
        self.map().get(id).cloned()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.map().contains_key(id)
    }

    pub fn group_ids(&self) -> Vec<String> {
        self.map().keys().cloned().collect()
    }

    /// A classic join wants this id: an empty consumer group gives way
    /// (Kafka converts it), one with members refuses with
    /// INCONSISTENT_GROUP_PROTOCOL. Called with the classic map locked.
    pub fn yield_to_classic(&self, id: &str) -> Result<(), i16> {
        let mut map = self.map();
        if let Some(g) = map.get(id) {
            if !lock(g).members.is_empty() {
                return Err(ResponseError::InconsistentGroupProtocol.code());
            }
            map.remove(id);
        }
        Ok(())
    }

    /// Creates the group if absent. `classic_empty`: the caller found a
    /// classic group of that id, `Some(true)` if it is empty (and has
    /// removed it), `Some(false)` if it has members.
    pub fn get_or_create(
        &self,
        id: &str,
        classic: Option<bool>,
    ) -> Result<Arc<Mutex<ConsumerGroup>>, HeartbeatError> {
        let mut map = self.map();
        if let Some(g) = map.get(id) {
            return Ok(g.clone());
        }
        if classic == Some(false) {
            return Err(HeartbeatError::NotConsumerGroup(id.to_string()));
        }
        let g = Arc::new(Mutex::new(ConsumerGroup::new(id)));
        map.insert(id.to_string(), g.clone());
        Ok(g)
    }

    /// One ConsumerGroupHeartbeat against `g` (found or created by the
    /// caller). `topics(name)`: the partition count of an existing topic.
    pub fn heartbeat(
        &self,
        g: &Mutex<ConsumerGroup>,
        hb: Heartbeat,
        topics: &dyn Fn(&str) -> Option<i32>,
    ) -> Result<HeartbeatOk, HeartbeatError> {
        let now = Instant::now();
        let mut g = lock(g);
        let interval = self.settings_for(&g.id).heartbeat_interval_ms;
        if hb.member_epoch == LEAVE_EPOCH || hb.member_epoch == STATIC_LEAVE_EPOCH {
            return self.leave(&mut g, &hb);
        }
        let joining = hb.member_epoch == JOIN_EPOCH;
        let mut member_id = hb.member_id.clone();
        if member_id.is_empty() {
            // v0 clients let the coordinator name them.
            member_id = uuid::Uuid::new_v4().to_string();
        }
        let mut is_new = false;
        match &hb.instance_id {
            None => match g.members.get(&member_id) {
                Some(m) => ConsumerGroup::check_epoch(m, hb.member_epoch, hb.owned.as_ref())?,
                None if joining => is_new = true,
                None => return Err(HeartbeatError::UnknownMember(member_id)),
            },
            Some(inst) => {
                let existing = g.statics.get(inst).cloned();
                if joining {
                    match existing {
                        None => is_new = !g.members.contains_key(&member_id),
                        Some(old) => {
                            let old_epoch = g.members.get(&old).map(|m| m.pos.epoch);
                            if old_epoch != Some(STATIC_LEAVE_EPOCH) {
                                return Err(HeartbeatError::UnreleasedInstance(inst.clone()));
                            }
                            // The instance is back under a new member id: it
                            // takes over the old member's partitions and
                            // target, without a new group epoch.
                            self.replace_static(&mut g, &old, &member_id);
                        }
                    }
                } else {
                    match existing {
                        None => return Err(HeartbeatError::UnknownMember(member_id)),
                        Some(cur) if cur != member_id => {
                            return Err(HeartbeatError::FencedInstance(inst.clone()))
                        }
                        Some(cur) => {
                            let Some(m) = g.members.get(&cur) else {
                                return Err(HeartbeatError::UnknownMember(member_id));
                            };
                            ConsumerGroup::check_epoch(m, hb.member_epoch, hb.owned.as_ref())?
                        }
                    }
                }
            }
        }
        if is_new {
            g.members.insert(
                member_id.clone(),
                Member {
                    id: member_id.clone(),
                    instance_id: None,
                    rack_id: None,
                    client_id: String::new(),
                    client_host: String::new(),
                    rebalance_timeout: Duration::from_secs(300),
                    subscribed: BTreeSet::new(),
                    assignor: None,
                    pos: Position {
                        state: MemberState::Stable,
                        epoch: 0,
                        previous_epoch: 0,
                        assigned: Assignment::new(),
                        pending_revocation: Assignment::new(),
                    },
                    last_seen: now,
                    revocation_deadline: None,
                },
            );
            if let Some(i) = &hb.instance_id {
                g.statics.insert(i.clone(), member_id.clone());
            }
            g.empty_since = None;
        }
        let before = g.members.get(&member_id).map(|m| m.pos.assigned.clone());
        let mut bump = false;
        if let Some(m) = g.members.get_mut(&member_id) {
            if hb.instance_id.is_some() {
                m.instance_id = hb.instance_id.clone();
            }
            if hb.rack_id.is_some() {
                m.rack_id = hb.rack_id.clone();
            }
            if hb.rebalance_timeout_ms >= 0 {
                m.rebalance_timeout = Duration::from_millis(hb.rebalance_timeout_ms as u64);
            }
            if let Some(a) = &hb.assignor {
                if m.assignor.as_ref() != Some(a) {
                    m.assignor = Some(a.clone());
                    bump = true;
                }
            }
            if let Some(t) = &hb.subscribed_topics {
                let t: BTreeSet<String> = t.iter().cloned().collect();
                if t != m.subscribed {
                    m.subscribed = t;
                    bump = true;
                }
            }
            m.client_id = hb.client_id.clone();
            m.client_host = hb.client_host.clone();
            m.last_seen = now;
        }
        // Topics created, deleted or grown since the last look count as a
        // subscription change (Kafka refreshes its metadata image likewise).
        if g.refresh_metadata(topics) {
            bump = true;
        }
        if bump {
            g.bump_epoch();
        }
        g.reconcile(&member_id, hb.owned.as_ref(), now);
        let Some(m) = g.members.get(&member_id) else {
            return Err(HeartbeatError::UnknownMember(member_id));
        };
        let full = joining
            || (hb.rebalance_timeout_ms != -1
                && hb.subscribed_topics.is_some()
                && hb.owned.is_some());
        let changed = before.as_ref() != Some(&m.pos.assigned);
        Ok(HeartbeatOk {
            member_id: member_id.clone(),
            member_epoch: m.pos.epoch,
            heartbeat_interval_ms: interval,
            assignment: (full || changed).then(|| m.pos.assigned.clone()),
        })
    }

    fn replace_static(&self, g: &mut ConsumerGroup, old: &str, new: &str) {
        let Some(mut m) = g.members.remove(old) else {
            return;
        };
        let inst = m.instance_id.clone();
        m.id = new.to_string();
        m.pos.epoch = 0;
        m.pos.previous_epoch = 0;
        m.pos.state = MemberState::Stable;
        for (t, ps) in &m.pos.assigned {
            for p in ps {
                g.owners.insert((t.clone(), *p), new.to_string());
            }
        }
        g.members.insert(new.to_string(), m);
        if let Some(t) = g.target.remove(old) {
            g.target.insert(new.to_string(), t);
        }
        if let Some(i) = inst {
            g.statics.insert(i, new.to_string());
        }
    }

    fn leave(&self, g: &mut ConsumerGroup, hb: &Heartbeat) -> Result<HeartbeatOk, HeartbeatError> {
        let member_id = match &hb.instance_id {
            None => {
                if !g.members.contains_key(&hb.member_id) {
                    return Err(HeartbeatError::UnknownMember(hb.member_id.clone()));
                }
                hb.member_id.clone()
            }
            Some(inst) => match g.statics.get(inst) {
                None => return Err(HeartbeatError::UnknownMember(hb.member_id.clone())),
                Some(cur) if *cur != hb.member_id => {
                    return Err(HeartbeatError::FencedInstance(inst.clone()))
                }
                Some(cur) => cur.clone(),
            },
        };
        if hb.member_epoch == STATIC_LEAVE_EPOCH {
            // A static member going away for a while (a rolling restart):
            // it keeps its partitions, unowned by anyone else, until it
            // comes back or its session runs out.
            let now = Instant::now();
            if let Some(m) = g.members.get(&member_id) {
                let mut pos = m.pos.clone();
                pos.epoch = STATIC_LEAVE_EPOCH;
                pos.pending_revocation = Assignment::new();
                g.set_position(&member_id, pos);
            }
            if let Some(m) = g.members.get_mut(&member_id) {
                m.last_seen = now;
                m.revocation_deadline = None;
            }
        } else {
            tracing::info!(group = %g.id, member = %member_id, "consumer group member left");
            g.fence(&member_id);
        }
        Ok(HeartbeatOk {
            member_id,
            member_epoch: hb.member_epoch,
            heartbeat_interval_ms: 0,
            assignment: None,
        })
    }

    /// Fences members whose session or revocation time ran out.
    pub fn tick(&self) {
        let now = Instant::now();
        let groups: Vec<Arc<Mutex<ConsumerGroup>>> = self.map().values().cloned().collect();
        for g in groups {
            let mut g = lock(&g);
            let session =
                Duration::from_millis(self.settings_for(&g.id).session_timeout_ms.max(0) as u64);
            let expired: Vec<(String, &'static str)> = g
                .members
                .values()
                .filter_map(|m| {
                    if now.duration_since(m.last_seen) > session {
                        Some((m.id.clone(), "session timeout"))
                    } else if m.revocation_deadline.is_some_and(|d| now >= d) {
                        Some((m.id.clone(), "revocation timeout"))
                    } else {
                        None
                    }
                })
                .collect();
            for (id, why) in expired {
                tracing::info!(group = %g.id, member = %id, "consumer group member fenced: {why}");
                g.fence(&id);
            }
        }
    }

    /// Is this commit (or fetch) from a member of `group` at its current
    /// epoch? `None`: not a consumer group (the classic rules apply).
    /// Kafka's ConsumerGroup.validateOffsetCommit / validateOffsetFetch.
    pub fn check_offsets_member(
        &self,
        group: &str,
        member_id: &str,
        epoch: i32,
    ) -> Option<Result<(), i16>> {
        let g = self.get(group)?;
        let g = lock(&g);
        // Outside the group protocol (admin tools): only while empty.
        if epoch < 0 && member_id.is_empty() {
            return Some(if g.members.is_empty() {
                Ok(())
            } else {
                Err(ResponseError::UnknownMemberId.code())
            });
        }
        let Some(m) = g.members.get(member_id) else {
            return Some(Err(ResponseError::UnknownMemberId.code()));
        };
        if epoch != m.pos.epoch {
            return Some(Err(ResponseError::StaleMemberEpoch.code()));
        }
        Some(Ok(()))
    }

    /// Removes an empty group (DeleteGroups); `Err` if it has members.
    pub fn delete_if_empty(&self, id: &str) -> Result<bool, ConsumerGroupState> {
        let mut map = self.map();
        let Some(g) = map.get(id) else {
            return Ok(false);
        };
        let state = lock(g).state();
        if state != ConsumerGroupState::Empty {
            return Err(state);
        }
        map.remove(id);
        Ok(true)
    }

    pub fn snapshot(&self, id: &str) -> Option<ConsumerGroupView> {
        let g = self.get(id)?;
        let g = lock(&g);
        Some(ConsumerGroupView {
            id: g.id.clone(),
            state: g.state(),
            group_epoch: g.group_epoch,
            assignment_epoch: g.assignment_epoch,
            assignor: g.assignor.clone(),
            members: g
                .members
                .values()
                .map(|m| ConsumerMemberView {
                    id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    member_epoch: m.pos.epoch,
                    state: m.pos.state,
                    subscribed: m.subscribed.iter().cloned().collect(),
                    assigned: m.pos.assigned.clone(),
                    target: g.target.get(&m.id).cloned().unwrap_or_default(),
                })
                .collect(),
            empty_for: g.empty_since.map(|t| t.elapsed()),
        })
    }
}

#[derive(Debug, Clone)]
pub struct ConsumerMemberView {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub member_epoch: i32,
    pub state: MemberState,
    pub subscribed: Vec<String>,
    pub assigned: Assignment,
    pub target: Assignment,
}

#[derive(Debug, Clone)]
pub struct ConsumerGroupView {
    pub id: String,
    pub state: ConsumerGroupState,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    pub members: Vec<ConsumerMemberView>,
    pub empty_for: Option<Duration>,
}

#[cfg(test)]
mod tests;
