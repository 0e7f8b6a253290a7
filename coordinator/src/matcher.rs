//! The matcher: which live worker gets which queued job.
//!
//! [`plan`] is the decision, pure and in memory. Jobs are grouped into classes (same
//! requirements, same model). Once per plan, each live worker is read once: its eligibility
//! profile as plain numbers ([`crate::eligibility::Profile`]), the static part of its priority,
//! and which of the jobs' models it holds (one lookup per model it holds). For each class met
//! for the first time, every live worker with spare capacity is checked against the on-chain
//! eligibility rule on those numbers (no string is read or hashed) and filed in a bucket queue
//! by its priority. Each job then takes the front worker of its class's highest non-empty
//! bucket — O(1) per job, found by the buckets' bit mask — and the worker goes to the back of
//! the bucket its spare capacity now gives it, so equals take turns (fairness) and a busy
//! worker sinks. A worker's capacity is shared between classes: a stale entry (capacity taken
//! by another class) is re-filed or dropped when it comes up. The benchmark `cargo bench -p
//! ciro-coordinator --bench matcher` measures the cost per job against the number of workers
//! and of classes.
//!
//! Priority, 0 to 63 (higher first): reputation score (0 to 32), the job's model already in
//! the worker's store (16: no download), low average latency (0 to 7), and spare capacity as a
//! share of capacity (0 to 8).
//!
//! [`explain`] answers "why is this job not matched yet" with the same rule.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use ciro_api::coordinator::{Requirement, UnmatchedReason, UnmetRequirement};
use ciro_api::wire::Digest;

use crate::eligibility::{self, Ineligible, Profile, Requirements};
use crate::store::WorkerRow;

/// A live worker as the matcher sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Its indexed row (state, capabilities, stake tier, reputation).
    pub row: WorkerRow,
    /// Jobs it can take now (its capacity less what it runs or has assigned).
    pub spare: u32,
    /// Jobs it can run at once.
    pub capacity: u32,
    /// Average seconds from assignment to result (0: no record).
    pub avg_latency_secs: u64,
    /// SHA-256 digests of the models in its local store (a heartbeat declares at most a few
    /// dozen: a list, read once per plan, with no hashing of its own).
    pub models: Vec<Digest>,
    /// The largest input it accepts, in bytes (None: no limit declared).
    pub max_input_bytes: Option<u64>,
    /// The largest model file it accepts, in bytes (None: no limit declared).
    pub max_model_bytes: Option<u64>,
}

/// The sizes of a job's data, which a worker's declared limits must admit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sizes {
    /// The input's size in bytes.
    pub input_bytes: u64,
    /// The model file's size in bytes.
    pub model_bytes: u64,
}

impl Candidate {
    /// Whether its declared limits admit a job's data of `sizes` for the model `model` (`None`:
    /// a hash no worker can hold): the input within its input limit, and the model file within
    /// its model limit unless it holds the model already (it downloads nothing then: an
    /// operator may load a model larger than what the worker downloads).
    pub fn accepts(&self, sizes: Sizes, model: Option<&Digest>) -> bool {
        self.max_input_bytes
            .is_none_or(|max| sizes.input_bytes <= max)
            && (self
                .max_model_bytes
                .is_none_or(|max| sizes.model_bytes <= max)
                || self.holds(model))
    }

    /// Whether its store holds `model`.
    pub fn holds(&self, model: Option<&Digest>) -> bool {
        model.is_some_and(|model| self.models.contains(model))
    }
}

/// A queued job whose data is present.
#[derive(Debug, Clone)]
pub struct QueuedJob {
    /// The job.
    pub job_id: u64,
    /// SHA-256 of its model file (64 hex).
    pub model_hash: String,
    /// What it requires.
    pub requirements: Requirements,
    /// The sizes of its input and model file, which a worker's declared limits must admit
    /// (zero: admitted by every worker).
    pub sizes: Sizes,
}

/// What [`plan`] decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// `(job id, index of the worker in the candidates)`, in the jobs' order.
    pub assignments: Vec<(u64, usize)>,
    /// Jobs left queued: no eligible worker with spare capacity.
    pub unassigned: Vec<u64>,
    /// How many times a worker was passed over for a job (forbidden for it, or its limits
    /// refusing the job's data): the plan's work beyond one pop per assignment.
    pub passed_over: u64,
}

const LEVELS: usize = 64;

/// A bucket entry's bit that says the worker holds the class's model.
const WARM: u32 = 1 << 31;

/// Jobs of one class share requirements and model.
type ClassKey<'a> = (Requirements, &'a str);

/// Hashes a SHA-256 digest by its first 8 bytes, which are already uniformly spread: a
/// lookup per model each worker holds, once per plan, costs a load rather than a SipHash of
/// 32 bytes. (The table holds only the jobs' models, registered on chain; a worker's declared
/// digests are only looked up, so crafted ones can at most probe a table of that size.)
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(word);
    }

    fn write_usize(&mut self, _length: usize) {}

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The jobs' models by digest, numbered in the order they are added. A plan looks up every
/// model every candidate holds: with few models (a tick usually sees a handful) a scan of
/// their first 8 bytes beats hashing, with more the table answers.
#[derive(Default)]
struct ModelIndex {
    /// Each model's first 8 bytes, then the model, by number.
    prefixes: Vec<u64>,
    digests: Vec<Digest>,
    table: HashMap<Digest, usize, BuildHasherDefault<DigestHasher>>,
}

/// Most models [`ModelIndex`] scans rather than hashes.
const SCANNED_MODELS: usize = 16;

impl ModelIndex {
    fn prefix(digest: &Digest) -> u64 {
        let mut word = [0u8; 8];
        word.copy_from_slice(&digest.0[..8]);
        u64::from_le_bytes(word)
    }

    /// The number of `digest`, added if new.
    fn add(&mut self, digest: Digest) -> usize {
        if let Some(number) = self.find(&digest) {
            return number;
        }
        let number = self.digests.len();
        self.prefixes.push(Self::prefix(&digest));
        self.digests.push(digest);
        self.table.insert(digest, number);
        number
    }

    fn find(&self, digest: &Digest) -> Option<usize> {
        if self.digests.len() > SCANNED_MODELS {
            return self.table.get(digest).copied();
        }
        let prefix = Self::prefix(digest);
        // A plain loop: called once per model each candidate holds, every plan.
        let mut i = 0;
        while i < self.prefixes.len() {
            if self.prefixes[i] == prefix && self.digests[i] == *digest {
                return Some(i);
            }
            i += 1;
        }
        None
    }

    fn len(&self) -> usize {
        self.digests.len()
    }
}

/// What the matcher reads of each candidate, once per plan: the eligibility profile, the part
/// of the priority that does not change within a plan, and the part that does.
struct Slot {
    profile: Profile,
    /// Reputation (0 to 32) and low latency (0 to 7).
    base: u8,
    /// Spare capacity as a share of capacity (0 to 8), kept with `spare`.
    room: u8,
    spare: u32,
    capacity: u32,
    /// Its declared limits (`u64::MAX`: none declared).
    max_input: u64,
    max_model: u64,
}

impl Slot {
    fn of(candidate: &Candidate) -> Self {
        let reputation = candidate.row.score.min(10_000) * 32 / 10_000;
        let speed = 7 - (candidate.avg_latency_secs / 60).min(7);
        let mut slot = Self {
            profile: Profile::of(&candidate.row),
            base: (reputation + speed) as u8,
            room: 0,
            spare: candidate.spare,
            capacity: candidate.capacity,
            max_input: candidate.max_input_bytes.unwrap_or(u64::MAX),
            max_model: candidate.max_model_bytes.unwrap_or(u64::MAX),
        };
        slot.room = slot.room_now();
        slot
    }

    // These run on every assignment: written without calls, which the dev profile keeps.
    #[inline(always)]
    fn room_now(&self) -> u8 {
        if self.capacity == 0 {
            0
        } else if self.spare >= self.capacity {
            8
        } else {
            (self.spare as u64 * 8 / self.capacity as u64) as u8
        }
    }

    /// Its priority for a class (0 to 63, higher first): reputation, latency, room, and 16 when
    /// it holds the class's model (no download).
    #[inline(always)]
    fn priority(&self, warm: bool) -> usize {
        let level = self.base as usize + self.room as usize + if warm { 16 } else { 0 };
        if level < LEVELS {
            level
        } else {
            LEVELS - 1
        }
    }

    /// Whether its limits admit `sizes` (the model file's only when it does not hold the
    /// model, `warm`).
    #[inline(always)]
    fn admits(&self, sizes: Sizes, warm: bool) -> bool {
        sizes.input_bytes <= self.max_input && (warm || sizes.model_bytes <= self.max_model)
    }

    /// Takes one job of its spare capacity.
    #[inline(always)]
    fn take(&mut self) {
        self.spare -= 1;
        self.room = self.room_now();
    }
}

/// A first-in first-out queue on a vector (entries are only appended during a plan).
#[derive(Default)]
struct Fifo {
    items: Vec<u32>,
    head: usize,
}

impl Fifo {
    #[inline(always)]
    fn push(&mut self, item: u32) {
        self.items.push(item);
    }

    #[inline(always)]
    fn is_empty(&self) -> bool {
        self.head == self.items.len()
    }

    #[inline(always)]
    fn pop(&mut self) -> Option<u32> {
        if self.head == self.items.len() {
            return None;
        }
        let item = self.items[self.head];
        self.head += 1;
        if self.head == self.items.len() {
            self.items.clear();
            self.head = 0;
        }
        Some(item)
    }
}

/// The bucket queue of one job class: entries are worker indexes, [`WARM`] set for a worker
/// holding the class's model.
struct Class {
    buckets: Vec<Fifo>,
    mask: u64,
    /// The largest data any of its workers admits (the model file: unbounded when one holds
    /// the model). A job over it is decided at once, without a pass over the workers.
    max_input: u64,
    max_model: u64,
}

impl Class {
    /// The class's eligible workers with spare capacity, filed by priority. `warm[w] == stamp`
    /// marks the workers that hold its model.
    fn new(
        requirements: &Requirements,
        slots: &[Slot],
        warm: &[u32],
        stamp: u32,
        offset: usize,
    ) -> Self {
        let mut class = Self {
            buckets: (0..LEVELS).map(|_| Fifo::default()).collect(),
            mask: 0,
            max_input: 0,
            max_model: 0,
        };
        let n = slots.len();
        // Start at a rotating offset: equals are not always taken in address order. (A plain
        // loop: this is the one pass over every candidate a class makes.)
        let mut i = offset % n.max(1);
        for _ in 0..n {
            let slot = &slots[i];
            if slot.spare > 0 && slot.profile.meets(requirements) {
                let is_warm = warm[i] == stamp;
                let entry = i as u32 | if is_warm { WARM } else { 0 };
                class.push(slot.priority(is_warm), entry);
                if slot.max_input > class.max_input {
                    class.max_input = slot.max_input;
                }
                if is_warm || slot.max_model > class.max_model {
                    class.max_model = if is_warm { u64::MAX } else { slot.max_model };
                }
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
        class
    }

    #[inline(always)]
    fn push(&mut self, level: usize, entry: u32) {
        self.buckets[level].push(entry);
        self.mask |= 1 << level;
    }

    #[inline(always)]
    fn pop(&mut self) -> Option<(usize, u32)> {
        while self.mask != 0 {
            let level = 63 - self.mask.leading_zeros() as usize;
            match self.buckets[level].pop() {
                Some(entry) => {
                    if self.buckets[level].is_empty() {
                        self.mask &= !(1 << level);
                    }
                    return Some((level, entry));
                }
                None => self.mask &= !(1 << level),
            }
        }
        None
    }
}

/// Assigns `jobs` (in order: oldest first) to `candidates`. `rotation` varies the order in
/// which equal workers are first considered (pass the tick number).
///
/// The work is linear: one class lookup per job; once per plan, each candidate's profile and
/// each model it holds that some job needs (one lookup per model); per class, one pass over
/// the candidates' profiles (plain numbers, no string is read or hashed); per assignment, a
/// pop and a push.
pub fn plan(jobs: &[QueuedJob], candidates: &[Candidate], rotation: usize) -> Plan {
    plan_excluding(jobs, candidates, rotation, |_, _| false)
}

/// [`plan`], never giving a job to a worker `forbidden(job id, candidate index)` names (the
/// job's own submitter, a pair the contract refused lately, a worker that gave the job back)
/// nor to one whose declared limits refuse its sizes: the job takes the best worker it may
/// have, and a worker passed over stays filed for the class's other jobs. A job larger than
/// every worker of its class admits is decided without a pass over them.
pub fn plan_excluding(
    jobs: &[QueuedJob],
    candidates: &[Candidate],
    rotation: usize,
    forbidden: impl Fn(u64, usize) -> bool,
) -> Plan {
    // A bucket entry is a worker's index below the WARM bit (two billion workers).
    let candidates = &candidates[..candidates.len().min(WARM as usize - 1)];
    // Each job's class, classes numbered in the order their first job comes.
    let mut index: HashMap<ClassKey<'_>, u32> = HashMap::new();
    let mut keys: Vec<ClassKey<'_>> = Vec::new();
    let job_class: Vec<u32> = jobs
        .iter()
        .map(|job| {
            let key = (job.requirements, job.model_hash.as_str());
            *index.entry(key).or_insert_with(|| {
                keys.push(key);
                keys.len() as u32 - 1
            })
        })
        .collect();
    // The models jobs need (each class's, by digest: a hash no worker can hold has none),
    // and which candidates hold each.
    let mut models = ModelIndex::default();
    let class_model: Vec<Option<usize>> = keys
        .iter()
        .map(|(_, model)| Some(models.add(model.parse::<Digest>().ok()?)))
        .collect();
    // Each candidate is read once (its row is the largest thing a plan touches): its slot,
    // and which of the jobs' models it holds.
    let mut holders: Vec<Vec<u32>> = vec![Vec::new(); models.len()];
    let mut slots: Vec<Slot> = Vec::with_capacity(candidates.len());
    for (i, candidate) in candidates.iter().enumerate() {
        slots.push(Slot::of(candidate));
        for model in &candidate.models {
            if let Some(m) = models.find(model) {
                holders[m].push(i as u32);
            }
        }
    }
    let mut warm = vec![0u32; candidates.len()];
    let mut classes: Vec<Option<Class>> = (0..keys.len()).map(|_| None).collect();
    let mut result = Plan::default();
    for (job, &c) in jobs.iter().zip(&job_class) {
        let class = classes[c as usize].get_or_insert_with(|| {
            // Built when its first job comes, from the capacity left then.
            let (requirements, _) = &keys[c as usize];
            let stamp = c + 1;
            for &w in class_model[c as usize].map_or(&[][..], |m| &holders[m]) {
                warm[w as usize] = stamp;
            }
            Class::new(requirements, &slots, &warm, stamp, rotation)
        });
        if job.sizes.input_bytes > class.max_input || job.sizes.model_bytes > class.max_model {
            result.unassigned.push(job.job_id);
            continue;
        }
        let mut chosen = None;
        let mut passed = Vec::new();
        while let Some((level, entry)) = class.pop() {
            let worker = (entry & !WARM) as usize;
            let slot = &slots[worker];
            if slot.spare == 0 {
                continue; // Taken by another class: drop it.
            }
            let now = slot.priority(entry & WARM != 0);
            if now < level {
                class.push(now, entry); // Its priority fell meanwhile: re-file it.
                continue;
            }
            if !slot.admits(job.sizes, entry & WARM != 0) || forbidden(job.job_id, worker) {
                passed.push((level, entry)); // Not for this job: filed again below.
                continue;
            }
            chosen = Some(entry);
            break;
        }
        result.passed_over += passed.len() as u64;
        if chosen.is_none() {
            // Every member left was passed over: what they admit is the class's bound now
            // (tighter than at its building once workers admitting more are taken).
            class.max_input = 0;
            class.max_model = 0;
            for &(_, entry) in &passed {
                let slot = &slots[(entry & !WARM) as usize];
                class.max_input = class.max_input.max(slot.max_input);
                class.max_model = if entry & WARM != 0 {
                    u64::MAX
                } else {
                    class.max_model.max(slot.max_model)
                };
            }
        }
        for (level, entry) in passed {
            class.push(level, entry);
        }
        match chosen {
            Some(entry) => {
                let worker = (entry & !WARM) as usize;
                let slot = &mut slots[worker];
                slot.take();
                if slot.spare > 0 {
                    class.push(slot.priority(entry & WARM != 0), entry);
                }
                result.assignments.push((job.job_id, worker));
            }
            None => result.unassigned.push(job.job_id),
        }
    }
    result
}

/// Why a queued job with its data present (of `sizes`) is not assigned, given the live
/// workers (most blocking first): no live worker; requirements no live worker meets (each with
/// the closest offer); data larger than every eligible worker accepts; eligible workers that
/// accept it all busy; or nothing (the next tick will take it).
pub fn explain(
    requirements: &Requirements,
    sizes: Sizes,
    model_hash: &str,
    candidates: &[Candidate],
) -> UnmatchedReason {
    if candidates.is_empty() {
        return UnmatchedReason::NoLiveWorkers;
    }
    let model = model_hash.parse::<Digest>().ok();
    let mut eligible = 0u32;
    let mut accepting = 0u32;
    let mut with_room = 0u32;
    for candidate in candidates {
        if eligibility::check(&candidate.row, requirements).is_ok() {
            eligible += 1;
            if candidate.accepts(sizes, model.as_ref()) {
                accepting += 1;
                if candidate.spare > 0 {
                    with_room += 1;
                }
            }
        }
    }
    if eligible == 0 {
        let active: Vec<&WorkerRow> = candidates
            .iter()
            .map(|c| &c.row)
            .filter(|w| w.state == "Active")
            .collect();
        let mut unmet = Vec::new();
        let best = |f: &dyn Fn(&WorkerRow) -> u64| active.iter().map(|w| f(w)).max();
        if !active.iter().any(|w| w.vram_mb >= requirements.min_vram_mb) {
            unmet.push(UnmetRequirement {
                requirement: Requirement::MinVramMb,
                required: requirements.min_vram_mb,
                best_offered: best(&|w| w.vram_mb),
            });
        }
        if !active
            .iter()
            .any(|w| requirements.required_flags & !w.flags == 0)
        {
            let closest = active
                .iter()
                .min_by_key(|w| (requirements.required_flags & !w.flags).count_ones())
                .map(|w| w.flags);
            unmet.push(UnmetRequirement {
                requirement: Requirement::RequiredFlags,
                required: requirements.required_flags,
                best_offered: closest,
            });
        }
        let tiered = |w: &&&WorkerRow| w.stake_tier != eligibility::NO_TIER;
        if !active
            .iter()
            .filter(tiered)
            .any(|w| w.stake_tier >= requirements.min_stake_tier)
        {
            unmet.push(UnmetRequirement {
                requirement: Requirement::MinStakeTier,
                required: requirements.min_stake_tier,
                best_offered: active.iter().filter(tiered).map(|w| w.stake_tier).max(),
            });
        }
        if !active.iter().any(|w| w.score >= requirements.min_score) {
            unmet.push(UnmetRequirement {
                requirement: Requirement::MinScore,
                required: requirements.min_score,
                best_offered: best(&|w| w.score),
            });
        }
        return UnmatchedReason::NoEligibleWorker { unmet };
    }
    if accepting == 0 {
        return UnmatchedReason::TooLarge {
            input_bytes: sizes.input_bytes,
            model_bytes: sizes.model_bytes,
            eligible,
        };
    }
    if with_room == 0 {
        return UnmatchedReason::EligibleWorkersBusy {
            eligible: accepting,
        };
    }
    UnmatchedReason::AwaitingMatcher
}

/// The sentence for a reason.
pub fn describe(reason: &UnmatchedReason) -> String {
    match reason {
        UnmatchedReason::InputNotUploaded => {
            "the input has not been uploaded: PUT it to /v1/blobs/{input_hash}".into()
        }
        UnmatchedReason::ModelFileNotUploaded => {
            "the model file has not been uploaded: PUT it to /v1/blobs/{model_hash}".into()
        }
        UnmatchedReason::ModelInactive => "the model was deactivated by its owner".into(),
        UnmatchedReason::NoLiveWorkers => "no worker has sent a heartbeat recently".into(),
        UnmatchedReason::NoEligibleWorker { unmet } if unmet.is_empty() => {
            "each requirement is met by some live worker, but no live worker meets all".into()
        }
        UnmatchedReason::NoEligibleWorker { unmet } => {
            let parts: Vec<String> = unmet
                .iter()
                .map(|u| {
                    let offered = u
                        .best_offered
                        .map_or("none active".to_owned(), |b| b.to_string());
                    match u.requirement {
                        Requirement::MinVramMb => format!(
                            "no live worker has {} MB of VRAM (most: {offered})",
                            u.required
                        ),
                        Requirement::RequiredFlags => format!(
                            "no live worker has all of the flags {:#x} (closest: {offered})",
                            u.required
                        ),
                        Requirement::MinStakeTier => format!(
                            "no live worker's stake reaches tier {} (highest: {offered})",
                            u.required
                        ),
                        Requirement::MinScore => format!(
                            "no live worker has a reputation of {} (best: {offered})",
                            u.required
                        ),
                    }
                })
                .collect();
            parts.join("; ")
        }
        UnmatchedReason::EligibleWorkersBusy { eligible } => {
            format!("{eligible} eligible live worker(s), all at capacity")
        }
        UnmatchedReason::AwaitingMatcher => {
            "an eligible worker has room: the next matcher tick assigns it".into()
        }
        UnmatchedReason::DeadlineTooClose => {
            "its deadline is too close for a worker's release window: it will expire".into()
        }
        UnmatchedReason::TooLarge {
            input_bytes,
            model_bytes,
            eligible,
        } => format!(
            "its input ({input_bytes} bytes) or model file ({model_bytes} bytes) is larger \
             than any of the {eligible} eligible live worker(s) accepts"
        ),
        UnmatchedReason::GivenBack { workers } => format!(
            "it failed on {workers} worker{}, as many as this coordinator allows: it is not \
             offered again, and it expires with a refund at its deadline unless you cancel it \
             first",
            if *workers == 1 { "" } else { "s" }
        ),
        UnmatchedReason::Unknown => "not matched yet".into(),
    }
}

/// The first rule `candidate` fails for `requirements` (for logs).
pub fn why_not(candidate: &Candidate, requirements: &Requirements) -> Option<Ineligible> {
    eligibility::check(&candidate.row, requirements).err()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn digest(hex: &str) -> Digest {
        hex.parse().expect("a digest")
    }

    fn worker(address: &str, score: u64, vram: u64, spare: u32) -> Candidate {
        Candidate {
            row: WorkerRow {
                address: address.into(),
                state: "Active".into(),
                gpu_model: "H100".into(),
                vram_mb: vram,
                compute_capability: 90,
                flags: 0b1,
                stake: "0x1".into(),
                hardware_tier: 3,
                stake_tier: 1,
                score,
                last_heartbeat: 0,
                info: "{}".into(),
            },
            spare,
            capacity: spare.max(1),
            avg_latency_secs: 0,
            models: Vec::new(),
            max_input_bytes: None,
            max_model_bytes: None,
        }
    }

    fn job(job_id: u64, vram: u64) -> QueuedJob {
        QueuedJob {
            job_id,
            model_hash: "aa".repeat(32),
            requirements: Requirements {
                min_vram_mb: vram,
                required_flags: 0b1,
                min_stake_tier: 0,
                min_score: 0,
            },
            sizes: Sizes::default(),
        }
    }

    #[test]
    fn assigns_eligible_workers_best_first_within_capacity_and_never_twice() {
        let workers = vec![
            worker("0x1", 9_000, 8_000, 1),
            worker("0x2", 5_000, 80_000, 2),
            worker("0x3", 9_500, 80_000, 1),
        ];
        let jobs: Vec<QueuedJob> = (1..=5).map(|id| job(id, 16_000)).collect();
        let plan = plan(&jobs, &workers, 0);
        // 0x1 lacks VRAM; 0x3 (best score) first, then 0x2 twice (its capacity).
        assert_eq!(plan.assignments, vec![(1, 2), (2, 1), (3, 1)]);
        assert_eq!(plan.unassigned, vec![4, 5]);
    }

    #[test]
    fn a_warm_model_wins_and_equals_take_turns() {
        let mut warm = worker("0x1", 5_000, 80_000, 1);
        warm.models.push(digest(&"aa".repeat(32)));
        let workers = vec![worker("0x0", 5_000, 80_000, 1), warm];
        let plan = plan(&[job(1, 0)], &workers, 0);
        assert_eq!(plan.assignments, vec![(1, 1)]);
        // Two equal workers with capacity 2: they alternate rather than one taking both.
        let equals = vec![
            worker("0x0", 5_000, 80_000, 2),
            worker("0x1", 5_000, 80_000, 2),
        ];
        let jobs: Vec<QueuedJob> = (1..=4).map(|id| job(id, 0)).collect();
        let taken: Vec<usize> = super::plan(&jobs, &equals, 0)
            .assignments
            .iter()
            .map(|a| a.1)
            .collect();
        assert_eq!(taken.iter().filter(|&&w| w == 0).count(), 2);
        assert_ne!(taken[0], taken[1]);
    }

    #[test]
    fn the_model_index_numbers_each_model_once_scanned_or_hashed() {
        let mut index = ModelIndex::default();
        // Digests sharing their first 8 bytes differ only past the prefix the scan compares.
        let model = |i: usize| digest(&format!("{:016x}{:048x}", i % 3, i));
        for i in 0..3 * SCANNED_MODELS {
            assert_eq!(index.add(model(i)), i);
            assert_eq!(index.add(model(i)), i, "added twice");
            // Every model added so far is found under its number, whichever way is used.
            for j in 0..=i {
                assert_eq!(index.find(&model(j)), Some(j));
            }
            assert_eq!(index.find(&model(i + 1)), None);
        }
        assert_eq!(index.len(), 3 * SCANNED_MODELS);
    }

    #[test]
    fn capacity_is_shared_between_job_classes() {
        let workers = vec![worker("0x1", 5_000, 80_000, 1)];
        let plan = plan(&[job(1, 0), job(2, 16_000)], &workers, 0);
        assert_eq!(plan.assignments, vec![(1, 0)]);
        assert_eq!(plan.unassigned, vec![2]);
    }

    #[test]
    fn random_plans_take_the_best_eligible_worker_within_capacity_and_leave_none_assignable() {
        let mut next = eligibility::test_rng(0x9e37_79b9_7f4a_7c15);
        let mut assigned_total = 0;
        for round in 0..200 {
            let workers: Vec<Candidate> = (0..1 + next(40))
                .map(|i| {
                    let mut w = worker(&format!("{i:#x}"), next(10_001), next(4) * 16_000, 0);
                    w.row.state =
                        ["Active", "Active", "Active", "Inactive"][next(4) as usize].into();
                    w.row.flags = next(8);
                    w.row.stake_tier = [0, 1, 2, eligibility::NO_TIER][next(4) as usize];
                    w.capacity = next(4) as u32;
                    w.spare = next(u64::from(w.capacity) + 1) as u32;
                    w.avg_latency_secs = next(900);
                    w.models = (0..next(3))
                        .map(|_| digest(&format!("{:02x}", next(5)).repeat(32)))
                        .collect();
                    w.max_input_bytes = [None, Some(100), Some(1_000)][next(3) as usize];
                    w.max_model_bytes = [None, Some(100), Some(1_000)][next(3) as usize];
                    w
                })
                .collect();
            let jobs: Vec<QueuedJob> = (0..next(120))
                .map(|id| QueuedJob {
                    job_id: id,
                    model_hash: format!("{:02x}", next(5)).repeat(32),
                    requirements: Requirements {
                        min_vram_mb: next(4) * 16_000,
                        required_flags: next(8),
                        min_stake_tier: next(3),
                        min_score: next(3) * 3_000,
                    },
                    sizes: Sizes {
                        input_bytes: [0, 100, 500, 2_000][next(4) as usize],
                        model_bytes: [0, 100, 500, 2_000][next(4) as usize],
                    },
                })
                .collect();
            // A few (job, worker) pairs are forbidden (own job, refused, given back).
            let forbidden: HashSet<(u64, usize)> = (0..next(30))
                .map(|_| (next(120), next(workers.len() as u64) as usize))
                .collect();
            let decided =
                plan_excluding(&jobs, &workers, round, |j, w| forbidden.contains(&(j, w)));
            // Forbidden, or the worker's declared limits refuse the job's data.
            let refused = |job: &QueuedJob, w: usize| {
                forbidden.contains(&(job.job_id, w))
                    || !workers[w].accepts(job.sizes, Some(&digest(&job.model_hash)))
            };
            let mut taken = vec![0u32; workers.len()];
            // The priority a worker has once `taken` of its spare capacity is gone.
            let now = |w: usize, taken: u32, job: &QueuedJob| {
                let mut slot = Slot::of(&workers[w]);
                slot.spare -= taken;
                slot.room = slot.room_now();
                slot.priority(workers[w].holds(Some(&digest(&job.model_hash))))
            };
            for &(job_id, w) in &decided.assignments {
                let job = &jobs[job_id as usize];
                assert!(
                    eligibility::check(&workers[w].row, &job.requirements).is_ok(),
                    "job {job_id} went to an ineligible worker"
                );
                assert!(
                    !refused(job, w),
                    "job {job_id} went to worker {w}, forbidden for it or refused by its limits"
                );
                // No eligible worker with room ranked higher at that moment.
                let chosen = now(w, taken[w], job);
                for (o, c) in workers.iter().enumerate() {
                    if taken[o] < c.spare
                        && !refused(job, o)
                        && eligibility::check(&c.row, &job.requirements).is_ok()
                    {
                        assert!(
                            now(o, taken[o], job) <= chosen,
                            "job {job_id} went to worker {w} while {o} ranked higher"
                        );
                    }
                }
                taken[w] += 1;
                assert!(
                    taken[w] <= workers[w].spare,
                    "worker {w} over its spare capacity"
                );
            }
            // Every job is decided once, in the jobs' order.
            let mut ids: Vec<u64> = decided.assignments.iter().map(|a| a.0).collect();
            ids.extend(&decided.unassigned);
            ids.sort_unstable();
            assert_eq!(ids, (0..jobs.len() as u64).collect::<Vec<_>>());
            // A job left queued had no eligible worker with room left.
            for &job_id in &decided.unassigned {
                let job = &jobs[job_id as usize];
                for (w, c) in workers.iter().enumerate() {
                    assert!(
                        taken[w] == c.spare
                            || refused(job, w)
                            || eligibility::check(&c.row, &job.requirements).is_err(),
                        "job {job_id} left queued while worker {w} had room"
                    );
                }
            }
            assigned_total += decided.assignments.len();
        }
        assert!(assigned_total > 1_000, "{assigned_total}");
    }

    #[test]
    fn explanations_name_the_unmet_requirement_and_the_closest_offer() {
        let workers = vec![
            worker("0x1", 5_000, 8_000, 1),
            worker("0x2", 7_000, 16_000, 0),
        ];
        let needs = |vram| Requirements {
            min_vram_mb: vram,
            required_flags: 0b1,
            min_stake_tier: 0,
            min_score: 0,
        };
        let none = Sizes::default();
        let reason = explain(&needs(40_000), none, "", &workers);
        assert_eq!(
            reason,
            UnmatchedReason::NoEligibleWorker {
                unmet: vec![UnmetRequirement {
                    requirement: Requirement::MinVramMb,
                    required: 40_000,
                    best_offered: Some(16_000),
                }]
            }
        );
        assert_eq!(
            describe(&reason),
            "no live worker has 40000 MB of VRAM (most: 16000)"
        );
        assert_eq!(
            explain(&needs(16_000), none, "", &workers),
            UnmatchedReason::EligibleWorkersBusy { eligible: 1 }
        );
        assert_eq!(
            explain(&needs(0), none, "", &workers),
            UnmatchedReason::AwaitingMatcher
        );
        assert_eq!(
            explain(&needs(0), none, "", &[]),
            UnmatchedReason::NoLiveWorkers
        );
    }

    #[test]
    fn data_larger_than_a_workers_declared_limits_is_explained_and_never_planned_for_it() {
        let mut small = worker("0x1", 9_000, 80_000, 2);
        small.max_input_bytes = Some(1_000);
        small.max_model_bytes = Some(50_000);
        let mut roomy = worker("0x2", 1_000, 80_000, 2);
        roomy.max_input_bytes = Some(10_000);
        let needs = Requirements {
            min_vram_mb: 0,
            required_flags: 0,
            min_stake_tier: 0,
            min_score: 0,
        };
        let model = "aa".repeat(32);
        let big = Sizes {
            input_bytes: 5_000,
            model_bytes: 20_000,
        };
        // The roomy worker admits it (no model limit declared): no size reason.
        assert_eq!(
            explain(&needs, big, &model, &[small.clone(), roomy.clone()]),
            UnmatchedReason::AwaitingMatcher
        );
        let reason = explain(&needs, big, &model, std::slice::from_ref(&small));
        assert_eq!(
            reason,
            UnmatchedReason::TooLarge {
                input_bytes: 5_000,
                model_bytes: 20_000,
                eligible: 1
            }
        );
        assert!(describe(&reason).contains("larger than any of the 1 eligible"));
        // A model file over the limit is refused as well; within both, accepted.
        assert!(!small.accepts(
            Sizes {
                input_bytes: 10,
                model_bytes: 60_000
            },
            Some(&digest(&model))
        ));
        assert!(small.accepts(
            Sizes {
                input_bytes: 1_000,
                model_bytes: 50_000
            },
            Some(&digest(&model))
        ));
        // Busy workers that admit it: busy, counting only those.
        roomy.spare = 0;
        assert_eq!(
            explain(&needs, big, &model, &[small, roomy]),
            UnmatchedReason::EligibleWorkersBusy { eligible: 1 }
        );
    }

    #[test]
    fn a_worker_holding_the_model_takes_a_job_whose_model_file_is_over_its_download_limit() {
        let model = "aa".repeat(32);
        // It holds the model (its operator loaded it) and downloads at most 1 byte of model.
        let mut holder = worker("0x1", 1_000, 80_000, 1);
        holder.models.push(digest(&model));
        holder.max_model_bytes = Some(1);
        let mut other = worker("0x2", 9_000, 80_000, 1);
        other.max_model_bytes = Some(1);
        let mut big = job(1, 0);
        big.sizes.model_bytes = 100;
        let workers = [other.clone(), holder.clone()];
        let decided = plan(std::slice::from_ref(&big), &workers, 0);
        assert_eq!(decided.assignments, vec![(1, 1)]);
        assert!(
            holder.accepts(big.sizes, Some(&digest(&model)))
                && !other.accepts(big.sizes, Some(&digest(&model)))
        );
        assert_eq!(
            explain(&big.requirements, big.sizes, &model, &workers),
            UnmatchedReason::AwaitingMatcher
        );
        // Its input limit still applies.
        big.sizes.input_bytes = 10;
        holder.max_input_bytes = Some(5);
        assert!(plan(&[big], &[other, holder], 0).assignments.is_empty());
    }

    #[test]
    fn jobs_larger_than_every_worker_of_their_class_admits_cost_no_pass_over_the_workers() {
        let mut workers: Vec<Candidate> = (0..100)
            .map(|i| {
                let mut w = worker(&format!("{i:#x}"), 5_000, 80_000, 4);
                w.max_input_bytes = Some(1);
                w
            })
            .collect();
        // A worker that declares no limit, but is not eligible for the jobs' class: it must
        // not make the class admit everything.
        let mut unlimited = worker("0xfff", 5_000, 8_000, 4);
        unlimited.max_input_bytes = None;
        workers.push(unlimited);
        let mut jobs: Vec<QueuedJob> = (0..1_000)
            .map(|id| {
                let mut j = job(id, 16_000);
                j.sizes.input_bytes = 2;
                j
            })
            .collect();
        // One job that fits, last.
        jobs.push(job(1_000, 16_000));
        let asked = std::cell::Cell::new(0u64);
        let decided = plan_excluding(&jobs, &workers, 0, |_, _| {
            asked.set(asked.get() + 1);
            false
        });
        assert_eq!(decided.assignments.len(), 1);
        assert_eq!(decided.assignments[0].0, 1_000);
        assert_eq!(decided.unassigned.len(), 1_000);
        // Only the fitting job asked about a worker: the others were decided at once.
        assert_eq!(asked.get(), 1);
        assert_eq!(decided.passed_over, 0);

        // The one worker that admits big inputs is taken by the first big job; the class's
        // bound then tightens, so the next big jobs ask about the other workers once, not
        // each.
        let mut workers: Vec<Candidate> = (0..100)
            .map(|i| {
                let mut w = worker(&format!("{i:#x}"), 5_000, 80_000, 4);
                w.max_input_bytes = Some(1);
                w
            })
            .collect();
        workers.push(worker("0xfff", 9_000, 80_000, 1));
        let jobs: Vec<QueuedJob> = (0..1_000)
            .map(|id| {
                let mut j = job(id, 16_000);
                j.sizes.input_bytes = 2;
                j
            })
            .collect();
        asked.set(0);
        let decided = plan_excluding(&jobs, &workers, 0, |_, _| {
            asked.set(asked.get() + 1);
            false
        });
        assert_eq!(decided.assignments, vec![(0, 100)]);
        assert_eq!(decided.unassigned.len(), 999);
        assert_eq!(asked.get(), 1);
        assert_eq!(
            decided.passed_over, 100,
            "the refusing workers were passed over job by job"
        );
    }
}
