//! The matcher: which live worker gets which queued job.
//!
//! [`Matcher`] is the decision, in memory, and keeps its state across ticks. Its table holds
//! each live worker as plain numbers (its eligibility profile, [`crate::eligibility::Profile`],
//! the static part of its priority, its spare capacity and limits), refreshed by
//! [`Matcher::sync`] from the live workers each tick: an unchanged worker costs a comparison.
//! Jobs are grouped into classes (same requirements, same model); a class, built when its
//! first job comes (one pass over the table, checking the on-chain eligibility rule on those
//! numbers), files every eligible worker with spare capacity in a bucket queue by its
//! priority, and is kept while jobs of it keep coming: a worker that changed is re-filed in
//! each class by the sync. Each job then takes the front worker of its class's highest
//! non-empty bucket — O(1) per job, found by the buckets' bit mask — and the worker goes to
//! the back of the bucket its spare capacity now gives it, so equals take turns (fairness) and
//! a busy worker sinks. A worker's capacity is shared between classes: an entry whose
//! capacity another class took is re-filed or dropped when it comes up. So a plan costs one
//! class lookup per job and a pop and a push per assignment, not a pass over the workers. The
//! benchmark `cargo bench -p ciro-coordinator --bench matcher` measures the cost per job
//! against the number of workers and of classes. [`plan`] is one plan by a fresh matcher.
//!
//! Priority, 0 to 63 (higher first): reputation score (0 to 32), the job's model already in
//! the worker's store (16: no download), low average latency (0 to 7), and spare capacity as a
//! share of capacity (0 to 8).
//!
//! [`explain`] answers "why is this job not matched yet" with the same rule.

use std::collections::HashMap;

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
    /// The most inputs of a batch it runs (None: single jobs only).
    pub max_batch_items: Option<u64>,
}

/// The sizes of a job's data, which a worker's declared limits must admit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// The input's size in bytes (a batch's largest input: a worker fetches one at a time).
    pub input_bytes: u64,
    /// The model file's size in bytes.
    pub model_bytes: u64,
    /// Its inputs: 1, or a batch's count.
    pub items: u64,
}

impl Default for Sizes {
    fn default() -> Self {
        Self {
            input_bytes: 0,
            model_bytes: 0,
            items: 1,
        }
    }
}

impl Candidate {
    /// Whether its declared limits admit a job's data of `sizes` for the model `model` (`None`:
    /// a hash no worker can hold): the input within its input limit, and the model file within
    /// its model limit unless it holds the model already (it downloads nothing then: an
    /// operator may load a model larger than what the worker downloads).
    pub fn accepts(&self, sizes: Sizes, model: Option<&Digest>) -> bool {
        self.runs_items(sizes.items) && self.accepts_bytes(sizes, model)
    }

    /// Whether it runs a job of `items` inputs (a batch only when it declared batches that
    /// large).
    pub fn runs_items(&self, items: u64) -> bool {
        items <= self.max_batch_items.unwrap_or(1)
    }

    /// [`Self::accepts`] for the data's bytes alone.
    pub fn accepts_bytes(&self, sizes: Sizes, model: Option<&Digest>) -> bool {
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

/// A bucket entry: the worker's place in the table (the low 31 bits), [`WARM`], and the
/// generation of its filing in the class (the high 32 bits, below 2^24; an entry whose
/// generation is not the worker's current one in the class is stale and skipped).
type Entry = u64;

#[inline(always)]
fn entry(worker: usize, warm: bool, generation: u32) -> Entry {
    (u64::from(generation) << 32) | worker as u64 | if warm { u64::from(WARM) } else { 0 }
}

#[inline(always)]
fn worker_of(entry: Entry) -> usize {
    (entry as u32 & !WARM) as usize
}

#[inline(always)]
fn warm_of(entry: Entry) -> bool {
    entry as u32 & WARM != 0
}

#[inline(always)]
fn generation_of(entry: Entry) -> u32 {
    (entry >> 32) as u32
}

/// A level and whether the worker holds the class's model, in one byte.
#[inline(always)]
fn mark(level: usize, warm: bool) -> u8 {
    level as u8 | if warm { 0x80 } else { 0 }
}

/// A class is rebuilt (its generations start again at 1) once it has filed this many times.
const GENERATIONS: u32 = 1 << 23;

/// How many plans a class is kept without a job of it.
const CLASS_KEPT_PLANS: u64 = 64;

/// A class whose buckets hold more than twice its valid entries and this many more is
/// rebuilt at the next [`Matcher::sync`].
const STALE_SLACK: usize = 1024;

/// What a plan reads of each worker on every pop: the part of the priority that does not
/// change within a plan, and the part that does. What is read only when a worker is filed, or
/// for a job with data to admit, is kept apart in [`Traits`]: a plan's reads of the workers
/// are random, and 12 bytes a worker keep them in cache (32 bytes with the limits cost 1.57x
/// where 12 cost 1.46x at 10,000 workers, and 72 with the profile too, 1.72x).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    /// Reputation (0 to 32) and low latency (0 to 7).
    base: u8,
    /// Spare capacity as a share of capacity (0 to 8), kept with `spare`.
    room: u8,
    spare: u32,
    capacity: u32,
    /// Whether it declared a limit on the data it takes.
    limited: bool,
}

/// What is read of a worker when it is filed in a class (its eligibility profile, its limits
/// for the class's bounds), and its limits for a job with data when it declared any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Traits {
    profile: Profile,
    /// Its declared limits (`u64::MAX`: none declared).
    max_input: u64,
    max_model: u64,
    /// The most inputs of a batch (1: single jobs only).
    max_items: u64,
}

impl Traits {
    fn of(candidate: &Candidate) -> Self {
        Self {
            profile: Profile::of(&candidate.row),
            max_input: candidate.max_input_bytes.unwrap_or(u64::MAX),
            max_model: candidate.max_model_bytes.unwrap_or(u64::MAX),
            max_items: candidate.max_batch_items.unwrap_or(1),
        }
    }

    /// A place no worker holds: eligible for nothing.
    fn none() -> Self {
        Self {
            profile: Profile::closed(),
            max_input: 0,
            max_model: 0,
            max_items: 0,
        }
    }

    /// Whether its limits admit `sizes` (the model file's only when it does not hold the
    /// model, `warm`).
    #[inline(always)]
    fn admits(&self, sizes: Sizes, warm: bool) -> bool {
        sizes.input_bytes <= self.max_input
            && (warm || sizes.model_bytes <= self.max_model)
            && sizes.items <= self.max_items
    }
}

impl Slot {
    /// A place no worker holds: no capacity.
    const VACANT: Self = Self {
        base: 0,
        room: 0,
        spare: 0,
        capacity: 0,
        limited: false,
    };

    fn of(candidate: &Candidate) -> Self {
        let reputation = candidate.row.score.min(10_000) * 32 / 10_000;
        let speed = 7 - (candidate.avg_latency_secs / 60).min(7);
        let mut slot = Self {
            base: (reputation + speed) as u8,
            room: 0,
            spare: candidate.spare,
            capacity: candidate.capacity,
            limited: candidate.max_input_bytes.is_some() || candidate.max_model_bytes.is_some(),
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
        } else if self.capacity < 1 << 28 {
            // (A 32-bit division, cheaper than a 64-bit one on the assignment path.)
            (self.spare * 8 / self.capacity) as u8
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

    /// Takes one job of its spare capacity.
    #[inline(always)]
    fn take(&mut self) {
        self.spare -= 1;
        self.room = self.room_now();
    }
}

/// A first-in first-out queue on a vector. It lives across plans: the consumed front is
/// dropped once it is the larger half (amortized O(1) a pop).
#[derive(Default)]
struct Fifo {
    items: Vec<Entry>,
    head: usize,
}

impl Fifo {
    #[inline(always)]
    fn push(&mut self, item: Entry) {
        self.items.push(item);
    }

    #[inline(always)]
    fn is_empty(&self) -> bool {
        self.head == self.items.len()
    }

    #[inline(always)]
    fn pop(&mut self) -> Option<Entry> {
        if self.head == self.items.len() {
            return None;
        }
        let item = self.items[self.head];
        self.head += 1;
        if self.head == self.items.len() {
            self.items.clear();
            self.head = 0;
        } else if self.head >= 1024 && self.head * 2 >= self.items.len() {
            self.items.drain(..self.head);
            self.head = 0;
        }
        Some(item)
    }

    fn clear(&mut self) {
        self.items.clear();
        self.head = 0;
    }
}

/// One job class (same requirements, same model), kept across plans: a bucket queue of the
/// workers eligible for it with spare capacity, by priority.
///
/// Invariant, after every [`Matcher::sync`] and plan: a worker that meets the class's
/// requirements and has spare capacity has exactly one valid entry (`filed[w]` is its
/// generation and its bucket and warmth); every other entry is stale. A worker whose
/// priority fell since it was filed (capacity taken by another class) is re-filed when its
/// entry comes up; one whose priority rose is re-filed by the sync that raised it.
struct Class {
    requirements: Requirements,
    model: Option<Digest>,
    /// Its key in [`Matcher`]'s map of classes (the model as the jobs name it).
    model_hash: String,
    buckets: Vec<Fifo>,
    mask: u64,
    /// By table place: the generation of the worker's valid entry (the high 24 bits; 0:
    /// none) and its level and warmth ([`mark`], the low 8), in one word: a pop reads one
    /// random word of the class's, not two.
    filed: Vec<u32>,
    next_generation: u32,
    /// Entries in the buckets, valid or stale, and how many are valid.
    entries: usize,
    live: usize,
    /// At least the largest data any of its filed workers admits (the model file: unbounded
    /// when one holds the model). A job over it is decided at once, without a pass over them.
    max_input: u64,
    max_model: u64,
    max_items: u64,
    /// The last plan that had a job of it.
    last_plan: u64,
}

impl Class {
    fn new(requirements: Requirements, model_hash: &str, places: usize) -> Self {
        Self {
            requirements,
            model: model_hash.parse::<Digest>().ok(),
            model_hash: model_hash.to_owned(),
            buckets: (0..LEVELS).map(|_| Fifo::default()).collect(),
            mask: 0,
            filed: vec![0; places],
            next_generation: 1,
            entries: 0,
            live: 0,
            max_input: 0,
            max_model: 0,
            max_items: 0,
            last_plan: 0,
        }
    }

    /// Files every worker afresh, starting at a rotating `offset` (equals are not always taken
    /// in table order): O(workers), at a class's creation and when stale entries pile up.
    fn build(&mut self, slots: &[Slot], traits: &[Traits], held: &[Vec<Digest>], offset: usize) {
        for bucket in &mut self.buckets {
            bucket.clear();
        }
        self.mask = 0;
        self.filed.iter_mut().for_each(|g| *g = 0);
        self.next_generation = 1;
        self.entries = 0;
        self.live = 0;
        self.max_input = 0;
        self.max_model = 0;
        self.max_items = 0;
        let n = slots.len();
        // (A plain loop: the one pass over every worker a class makes.)
        let mut i = offset % n.max(1);
        for _ in 0..n {
            self.refile(i, &slots[i], &traits[i], &held[i]);
            i += 1;
            if i == n {
                i = 0;
            }
        }
    }

    /// Files worker `w` as its slot now is: a new valid entry at its priority when it meets
    /// the requirements with spare capacity and is not filed there already; otherwise none.
    #[inline(always)]
    fn refile(&mut self, w: usize, slot: &Slot, traits: &Traits, held: &[Digest]) {
        if slot.spare == 0 || !traits.profile.meets(&self.requirements) {
            if self.filed[w] != 0 {
                self.filed[w] = 0;
                self.live -= 1;
            }
            return;
        }
        let warm = match &self.model {
            Some(model) => held.contains(model),
            None => false,
        };
        // The bounds first: a worker filed already may admit more than it did (its limits
        // changed) since a plan tightened them.
        self.widen(traits, warm);
        let level = slot.priority(warm);
        if self.filed[w] != 0 && self.filed[w] as u8 == mark(level, warm) {
            return;
        }
        if self.filed[w] == 0 {
            self.live += 1;
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        self.filed[w] = generation << 8 | u32::from(mark(level, warm));
        self.push(level, entry(w, warm, generation));
    }

    /// The bounds raised to admit what a worker of `traits` admits (any model file when it
    /// holds the class's model, `warm`).
    #[inline(always)]
    fn widen(&mut self, traits: &Traits, warm: bool) {
        self.max_input = self.max_input.max(traits.max_input);
        self.max_items = self.max_items.max(traits.max_items);
        self.max_model = if warm {
            u64::MAX
        } else {
            self.max_model.max(traits.max_model)
        };
    }

    #[inline(always)]
    fn push(&mut self, level: usize, entry: Entry) {
        self.buckets[level].push(entry);
        self.mask |= 1 << level;
        self.entries += 1;
    }

    /// The front valid entry of the highest non-empty bucket, and its level (stale entries on
    /// the way are dropped).
    #[inline(always)]
    fn pop(&mut self) -> Option<(usize, Entry)> {
        while self.mask != 0 {
            let level = 63 - self.mask.leading_zeros() as usize;
            match self.buckets[level].pop() {
                Some(entry) => {
                    self.entries -= 1;
                    if self.buckets[level].is_empty() {
                        self.mask &= !(1 << level);
                    }
                    if self.filed[worker_of(entry)] >> 8 == generation_of(entry) {
                        return Some((level, entry));
                    }
                }
                None => self.mask &= !(1 << level),
            }
        }
        None
    }

    /// A popped valid entry filed again, at `level`.
    #[inline(always)]
    fn put_back(&mut self, level: usize, entry: Entry) {
        let w = worker_of(entry);
        self.filed[w] = generation_of(entry) << 8 | u32::from(mark(level, warm_of(entry)));
        self.push(level, entry);
    }

    /// A popped valid entry's worker leaves the class (no spare capacity left).
    #[inline(always)]
    fn leave(&mut self, entry: Entry) {
        self.filed[worker_of(entry)] = 0;
        self.live -= 1;
    }

    /// Whether stale entries outnumber the valid ones enough to rebuild.
    fn needs_rebuild(&self) -> bool {
        self.entries > 2 * self.live + STALE_SLACK || self.next_generation >= GENERATIONS
    }
}

/// Jobs of one class share requirements and model.
type ClassKey<'a> = (Requirements, &'a str);

/// The matcher's state, kept across ticks: a table of the live workers (each read into plain
/// numbers when it changes, not every plan) and the job classes seen lately, each a bucket
/// queue of its eligible workers kept up to date as the table changes.
///
/// A tick calls [`Matcher::sync`] with the live workers (the table's upkeep: a worker that
/// did not change costs a comparison; one that did is re-filed in each class) and then
/// [`Matcher::plan`], whose cost is one class lookup per job and a pop and a push per
/// assignment, whatever the number of workers. A class is built (one pass over the workers)
/// when its first job comes and dropped after [`CLASS_KEPT_PLANS`] plans without one.
#[derive(Default)]
pub struct Matcher {
    /// By table place (a worker keeps its place while it is live; a gone worker's place is
    /// reused): its slot, the models it holds, its address, whether a worker holds it, and the
    /// last sync that saw it.
    slots: Vec<Slot>,
    traits: Vec<Traits>,
    held: Vec<Vec<Digest>>,
    addresses: Vec<String>,
    taken: Vec<bool>,
    seen: Vec<u64>,
    places: HashMap<String, usize>,
    free: Vec<usize>,
    syncs: u64,
    /// The classes by number (`None`: a free number), and their numbers by key.
    classes: Vec<Option<Class>>,
    class_numbers: HashMap<(Requirements, String), usize>,
    plans: u64,
}

impl Matcher {
    /// An empty matcher.
    pub fn new() -> Self {
        Self::default()
    }

    /// The address of the worker at table place `place`.
    pub fn address(&self, place: usize) -> &str {
        &self.addresses[place]
    }

    /// Brings the table to `candidates` (every live worker, as the index and heartbeats have
    /// them now: spare capacity, profile, models, limits): a new worker gets a place, a
    /// changed one is re-filed in every class, one absent is removed. Rebuilds classes whose
    /// stale entries piled up. Returns each candidate's table place (a repeated address: the
    /// last wins).
    pub fn sync(&mut self, candidates: &[Candidate]) -> Vec<usize> {
        self.syncs += 1;
        let stamp = self.syncs;
        let mut places = Vec::with_capacity(candidates.len());
        for candidate in candidates {
            let slot = Slot::of(candidate);
            let traits = Traits::of(candidate);
            let (w, new) = match self.places.get(candidate.row.address.as_str()) {
                Some(&w) => (w, false),
                None => (self.place_for(&candidate.row.address), true),
            };
            self.seen[w] = stamp;
            places.push(w);
            if new
                || self.slots[w] != slot
                || self.traits[w] != traits
                || self.held[w] != candidate.models
            {
                self.slots[w] = slot;
                self.traits[w] = traits;
                self.held[w].clone_from(&candidate.models);
                for class in self.classes.iter_mut().flatten() {
                    class.refile(w, &slot, &traits, &self.held[w]);
                    if class.next_generation >= GENERATIONS {
                        class.build(&self.slots, &self.traits, &self.held, self.plans as usize);
                    }
                }
            }
        }
        for w in 0..self.slots.len() {
            if self.seen[w] != stamp && self.taken[w] {
                // Gone: no capacity, unfiled everywhere; its place is free.
                self.places.remove(&self.addresses[w]);
                self.addresses[w].clear();
                self.taken[w] = false;
                self.held[w].clear();
                self.slots[w] = Slot::VACANT;
                self.traits[w] = Traits::none();
                for class in self.classes.iter_mut().flatten() {
                    class.refile(w, &self.slots[w], &self.traits[w], &[]);
                }
                self.free.push(w);
            }
        }
        let offset = self.plans as usize;
        for class in self.classes.iter_mut().flatten() {
            if class.needs_rebuild() {
                class.build(&self.slots, &self.traits, &self.held, offset);
            }
        }
        places
    }

    /// A place for a new worker at `address` (a free one, or a new one in every class).
    fn place_for(&mut self, address: &str) -> usize {
        let w = match self.free.pop() {
            Some(w) => w,
            None => {
                let w = self.slots.len();
                // A class's build takes a generation per worker, and a class is rebuilt once
                // it has used GENERATIONS: with at most half as many workers, a class's
                // generations stay below twice that, within their 24 bits.
                assert!(w < (GENERATIONS / 2) as usize, "over 4 million workers");
                self.traits.push(Traits::none());
                self.slots.push(Slot::VACANT);
                self.held.push(Vec::new());
                self.addresses.push(String::new());
                self.seen.push(0);
                self.taken.push(false);
                for class in self.classes.iter_mut().flatten() {
                    class.filed.push(0);
                }
                w
            }
        };
        address.clone_into(&mut self.addresses[w]);
        self.taken[w] = true;
        self.places.insert(address.to_owned(), w);
        w
    }

    /// The number of the class of `key`, created and built if new.
    fn class_for(&mut self, key: ClassKey<'_>, plan: u64, rotation: usize) -> usize {
        let (requirements, model_hash) = key;
        let owned = (requirements, model_hash.to_owned());
        let number = match self.class_numbers.get(&owned) {
            Some(&number) => number,
            None => {
                let mut class = Class::new(requirements, model_hash, self.slots.len());
                class.build(&self.slots, &self.traits, &self.held, rotation);
                let number = match self.classes.iter().position(Option::is_none) {
                    Some(free) => {
                        self.classes[free] = Some(class);
                        free
                    }
                    None => {
                        self.classes.push(Some(class));
                        self.classes.len() - 1
                    }
                };
                self.class_numbers.insert(owned, number);
                number
            }
        };
        if let Some(class) = &mut self.classes[number] {
            class.last_plan = plan;
        }
        number
    }

    /// Assigns `jobs` (in order: oldest first) to the table's workers, never giving a job to a
    /// worker `forbidden(job id, place, address)` names (the job's own submitter, a pair the
    /// contract refused lately, a worker that gave the job back) nor to one whose declared
    /// limits refuse its sizes: the job takes the best worker it may have, and a worker passed
    /// over stays filed for the class's other jobs. A job larger than every worker of its
    /// class admits is decided without a pass over them. `rotation` varies where a new class
    /// starts filing equal workers (pass the tick number). Assignments name table places
    /// ([`Matcher::address`]); the capacity they take is the table's until the next sync.
    pub fn plan(
        &mut self,
        jobs: &[QueuedJob],
        rotation: usize,
        forbidden: impl Fn(u64, usize, &str) -> bool,
    ) -> Plan {
        self.plans += 1;
        let plan = self.plans;
        // Each job's class: one lookup per job in a map of this plan's classes.
        let mut numbers: HashMap<ClassKey<'_>, usize> = HashMap::new();
        let job_class: Vec<usize> = jobs
            .iter()
            .map(|job| {
                let key = (job.requirements, job.model_hash.as_str());
                *numbers
                    .entry(key)
                    .or_insert_with(|| self.class_for(key, plan, rotation))
            })
            .collect();
        let Self {
            slots,
            traits,
            addresses,
            classes,
            ..
        } = self;
        let mut result = Plan::default();
        for (job, &c) in jobs.iter().zip(&job_class) {
            let Some(class) = classes[c].as_mut() else {
                result.unassigned.push(job.job_id);
                continue;
            };
            if job.sizes.input_bytes > class.max_input
                || job.sizes.model_bytes > class.max_model
                || job.sizes.items > class.max_items
            {
                result.unassigned.push(job.job_id);
                continue;
            }
            let mut chosen = None;
            let mut passed = Vec::new();
            while let Some((level, entry)) = class.pop() {
                let worker = worker_of(entry);
                let slot = &slots[worker];
                if slot.spare == 0 {
                    class.leave(entry); // Taken by another class.
                    continue;
                }
                let now = slot.priority(warm_of(entry));
                if now < level {
                    class.put_back(now, entry); // Its priority fell meanwhile: re-file it.
                    continue;
                }
                // (A batch reads every worker's limits: a worker that declared none runs single
                // jobs only, and single jobs keep the 12-byte read of unlimited workers.)
                if ((slot.limited || job.sizes.items > 1)
                    && !traits[worker].admits(job.sizes, warm_of(entry)))
                    || forbidden(job.job_id, worker, &addresses[worker])
                {
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
                class.max_items = 0;
                for &(_, entry) in &passed {
                    class.widen(&traits[worker_of(entry)], warm_of(entry));
                }
            }
            for (level, entry) in passed {
                class.put_back(level, entry);
            }
            match chosen {
                Some(entry) => {
                    let worker = worker_of(entry);
                    let slot = &mut slots[worker];
                    slot.take();
                    if slot.spare > 0 {
                        class.put_back(slot.priority(warm_of(entry)), entry);
                    } else {
                        class.leave(entry);
                    }
                    result.assignments.push((job.job_id, worker));
                }
                None => result.unassigned.push(job.job_id),
            }
        }
        // Classes without a job lately are dropped.
        for number in 0..self.classes.len() {
            let aged = |class: &mut Class| plan - class.last_plan >= CLASS_KEPT_PLANS;
            if let Some(class) = self.classes[number].take_if(aged) {
                self.class_numbers
                    .remove(&(class.requirements, class.model_hash));
            }
        }
        result
    }

    /// Live classes (tests and metrics).
    pub fn classes(&self) -> usize {
        self.classes.iter().flatten().count()
    }
}

/// Assigns `jobs` (in order: oldest first) to `candidates` with a fresh [`Matcher`];
/// assignments name candidates by index. `rotation` varies the order in which equal workers
/// are first considered.
pub fn plan(jobs: &[QueuedJob], candidates: &[Candidate], rotation: usize) -> Plan {
    plan_excluding(jobs, candidates, rotation, |_, _| false)
}

/// [`plan`] with [`Matcher::plan`]'s exclusions: never a job to a worker `forbidden(job id,
/// candidate index)` names nor to one whose declared limits refuse its sizes.
pub fn plan_excluding(
    jobs: &[QueuedJob],
    candidates: &[Candidate],
    rotation: usize,
    forbidden: impl Fn(u64, usize) -> bool,
) -> Plan {
    let mut matcher = Matcher::new();
    let places = matcher.sync(candidates);
    // Places back to candidates (for a repeated address, the last candidate holds the place).
    let mut candidate_at = vec![usize::MAX; matcher.slots.len()];
    for (i, &w) in places.iter().enumerate() {
        candidate_at[w] = i;
    }
    let mut decided = matcher.plan(jobs, rotation, |job, w, _| forbidden(job, candidate_at[w]));
    for assignment in &mut decided.assignments {
        assignment.1 = candidate_at[assignment.1];
    }
    decided
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
    let mut running_items = 0u32;
    for candidate in candidates {
        if eligibility::check(&candidate.row, requirements).is_ok() {
            eligible += 1;
            if candidate.runs_items(sizes.items) {
                running_items += 1;
            }
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
    if running_items == 0 {
        return UnmatchedReason::NoBatchWorker { items: sizes.items };
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
        UnmatchedReason::ManifestNotUploaded => {
            "it is a batch whose manifest has not been uploaded: PUT it to \
             /v1/blobs/{input_hash}, then each input it lists"
                .into()
        }
        UnmatchedReason::ManifestInvalid { bytes, items } => format!(
            "its manifest ({bytes} bytes) is not {items} SHA-256 digests of 32 bytes: no worker \
             can run it; cancel it for a full refund (`ciro job cancel`), or it is refunded at \
             its deadline"
        ),
        UnmatchedReason::BatchInputsMissing { missing } => format!(
            "{missing} of the inputs its manifest lists are not uploaded yet: PUT each to \
             /v1/blobs/{{digest}}"
        ),
        UnmatchedReason::NoBatchWorker { items } => format!(
            "no eligible live worker runs batches of {items} inputs (workers declare the most \
             in their heartbeats): it waits for one, or cancel it for a full refund"
        ),
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
            max_batch_items: None,
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
    fn capacity_is_shared_between_job_classes() {
        let workers = vec![worker("0x1", 5_000, 80_000, 1)];
        let plan = plan(&[job(1, 0), job(2, 16_000)], &workers, 0);
        assert_eq!(plan.assignments, vec![(1, 0)]);
        assert_eq!(plan.unassigned, vec![2]);
    }

    /// A random live worker named `address`.
    fn random_worker(address: &str, next: &mut impl FnMut(u64) -> u64) -> Candidate {
        let mut w = worker(address, next(10_001), next(4) * 16_000, 0);
        w.row.state = ["Active", "Active", "Active", "Inactive"][next(4) as usize].into();
        w.row.flags = next(8);
        w.row.stake_tier = [0, 1, 2, eligibility::NO_TIER][next(4) as usize];
        w.capacity = next(4) as u32;
        w.spare = next(u64::from(w.capacity) + 1) as u32;
        w.avg_latency_secs = next(900);
        w.models = (0..next(3))
            .map(|_| digest(&format!("{:02x}", next(5)).repeat(32)))
            .collect();
        w.models.sort_unstable();
        w.models.dedup();
        w.max_input_bytes = [None, Some(100), Some(1_000)][next(3) as usize];
        w.max_model_bytes = [None, Some(100), Some(1_000)][next(3) as usize];
        w.max_batch_items = [None, Some(1), Some(8), Some(1_000)][next(4) as usize];
        w
    }

    /// Random jobs (ids 0..n) over 5 models and a few requirements each.
    fn random_jobs(n: u64, next: &mut impl FnMut(u64) -> u64) -> Vec<QueuedJob> {
        (0..n)
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
                    items: [1, 1, 1, 1, 1, 1, 1, 1, 8, 32][next(10) as usize],
                },
            })
            .collect()
    }

    /// Checks a plan's invariants (assignments by candidate index): only eligible workers
    /// that may take the job and whose limits admit it, the best such worker at that moment,
    /// within spare capacity, every job decided once in the jobs' order, and none left queued
    /// while an eligible worker had room. Returns the assignments.
    fn check_plan(
        jobs: &[QueuedJob],
        workers: &[Candidate],
        forbidden: &dyn Fn(u64, usize) -> bool,
        decided: &Plan,
    ) -> usize {
        // Forbidden, or the worker's declared limits refuse the job's data.
        let refused = |job: &QueuedJob, w: usize| {
            forbidden(job.job_id, w)
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
        let position = |job_id: u64| jobs.iter().position(|j| j.job_id == job_id);
        for &(job_id, w) in &decided.assignments {
            let job = &jobs[position(job_id).expect("a planned job")];
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
        let order: Vec<usize> = decided
            .assignments
            .iter()
            .map(|a| position(a.0).expect("a planned job"))
            .collect();
        assert!(
            order.windows(2).all(|p| p[0] < p[1]),
            "assignments out of order"
        );
        let mut ids: Vec<u64> = decided.assignments.iter().map(|a| a.0).collect();
        ids.extend(&decided.unassigned);
        ids.sort_unstable();
        let mut all: Vec<u64> = jobs.iter().map(|j| j.job_id).collect();
        all.sort_unstable();
        assert_eq!(ids, all);
        // A job left queued had no eligible worker with room left.
        for &job_id in &decided.unassigned {
            let job = &jobs[position(job_id).expect("a planned job")];
            for (w, c) in workers.iter().enumerate() {
                assert!(
                    taken[w] == c.spare
                        || refused(job, w)
                        || eligibility::check(&c.row, &job.requirements).is_err(),
                    "job {job_id} left queued while worker {w} had room"
                );
            }
        }
        decided.assignments.len()
    }

    #[test]
    fn random_plans_take_the_best_eligible_worker_within_capacity_and_leave_none_assignable() {
        let mut next = eligibility::test_rng(0x9e37_79b9_7f4a_7c15);
        let mut assigned_total = 0;
        for round in 0..300 {
            let workers: Vec<Candidate> = (0..1 + next(40))
                .map(|i| random_worker(&format!("{i:#x}"), &mut next))
                .collect();
            let n = next(120);
            let jobs = random_jobs(n, &mut next);
            // A few (job, worker) pairs are forbidden (own job, refused, given back).
            let forbidden: HashSet<(u64, usize)> = (0..next(30))
                .map(|_| (next(120), next(workers.len() as u64) as usize))
                .collect();
            let decided =
                plan_excluding(&jobs, &workers, round, |j, w| forbidden.contains(&(j, w)));
            assigned_total += check_plan(
                &jobs,
                &workers,
                &|j, w| forbidden.contains(&(j, w)),
                &decided,
            );
        }
        assert!(assigned_total > 1_000, "{assigned_total}");
    }

    /// One matcher across 400 ticks, as the operator keeps it: workers come, go and change
    /// (capacity, profile, models, limits), some report exactly the capacity the last plan
    /// left them (the index saw the assignments) and some their whole capacity back; job
    /// classes come and go (a class unseen for long is dropped and built again). Every plan
    /// keeps the invariants a fresh matcher's plan keeps.
    #[test]
    fn a_matcher_kept_across_ticks_plans_as_a_fresh_one_would() {
        let mut next = eligibility::test_rng(0x2545_f491_4f6c_dd1d);
        let mut matcher = Matcher::new();
        // The last candidate of each of 60 addresses, and what the last plan took of it.
        let mut known: Vec<Option<Candidate>> = vec![None; 60];
        let mut taken_last = vec![0u32; 60];
        let (mut assigned_total, mut dropped_seen) = (0, false);
        for tick in 0..400u64 {
            let mut workers = Vec::new();
            let mut ids = Vec::new();
            for id in 0..60 {
                if next(10) < 2 {
                    known[id] = None; // Gone this tick (not live).
                    continue;
                }
                let candidate = match (&known[id], next(4)) {
                    // A new worker, or one that changed in every way.
                    (None, _) | (Some(_), 0) => random_worker(&format!("{id:#x}"), &mut next),
                    // The same, with what the last plan took gone from its capacity.
                    (Some(old), 1) => {
                        let mut same = old.clone();
                        same.spare = same.spare.saturating_sub(taken_last[id]);
                        same
                    }
                    // Its jobs finished: its whole capacity back.
                    (Some(old), 2) => {
                        let mut same = old.clone();
                        same.spare = same.capacity;
                        same
                    }
                    // One thing changed: models, score, limits or state.
                    (Some(old), _) => {
                        let mut changed = old.clone();
                        match next(5) {
                            0 => changed.models.clear(),
                            1 => changed.row.score = next(10_001),
                            2 => {
                                changed.max_input_bytes =
                                    [None, Some(100), Some(1_000)][next(3) as usize];
                                changed.max_model_bytes =
                                    [None, Some(100), Some(1_000)][next(3) as usize];
                            }
                            _ => {
                                changed.row.state = ["Active", "Inactive"][next(2) as usize].into()
                            }
                        }
                        changed
                    }
                };
                known[id] = Some(candidate.clone());
                workers.push(candidate);
                ids.push(id);
            }
            // Job classes drift: some ticks only one model, so the others' classes age out.
            // Six requirements over five models: classes recur from tick to tick.
            let mut jobs = random_jobs(next(100), &mut next);
            for job in &mut jobs {
                job.requirements = Requirements {
                    min_vram_mb: [0, 16_000, 48_000][next(3) as usize],
                    required_flags: [0, 0b11][next(2) as usize],
                    min_stake_tier: 0,
                    min_score: [0, 3_000][next(2) as usize],
                };
                if (tick / 100) % 2 == 1 {
                    job.model_hash = "00".repeat(32);
                }
            }
            let forbidden: HashSet<(u64, usize)> = (0..next(20))
                .map(|_| (next(100), next(workers.len().max(1) as u64) as usize))
                .collect();
            let places = matcher.sync(&workers);
            let mut candidate_at = HashMap::new();
            for (i, &w) in places.iter().enumerate() {
                assert_eq!(matcher.address(w), workers[i].row.address);
                candidate_at.insert(w, i);
            }
            let mut decided = matcher.plan(&jobs, tick as usize, |j, w, address| {
                assert_eq!(address, workers[candidate_at[&w]].row.address);
                forbidden.contains(&(j, candidate_at[&w]))
            });
            for assignment in &mut decided.assignments {
                assignment.1 = candidate_at[&assignment.1];
            }
            assigned_total += check_plan(
                &jobs,
                &workers,
                &|j, w| forbidden.contains(&(j, w)),
                &decided,
            );
            taken_last = vec![0; 60];
            for &(_, i) in &decided.assignments {
                taken_last[ids[i]] += 1;
            }
            dropped_seen |= (tick / 100) % 2 == 1 && tick % 100 == 99 && matcher.classes() <= 12;
        }
        assert!(assigned_total > 2_000, "{assigned_total}");
        assert!(dropped_seen, "classes unseen for long were not dropped");
    }

    /// A class's bound on the data its workers admit follows a worker whose limits rose while
    /// it stayed filed at the same priority (the bound was once raised only by a new filing,
    /// so the bigger job was refused at once, with the worker free).
    #[test]
    fn a_kept_class_admits_what_a_workers_raised_limits_admit() {
        let mut small = worker("0x1", 5_000, 80_000, 2);
        small.max_input_bytes = Some(100);
        let mut big = job(1, 0);
        big.sizes.input_bytes = 500;
        let mut matcher = Matcher::new();
        matcher.sync(std::slice::from_ref(&small));
        let decided = matcher.plan(std::slice::from_ref(&big), 0, |_, _, _| false);
        assert_eq!(decided.unassigned, vec![1]);
        small.max_input_bytes = Some(1_000);
        matcher.sync(std::slice::from_ref(&small));
        let decided = matcher.plan(&[big], 1, |_, _, _| false);
        assert_eq!(decided.assignments, vec![(1, 0)]);
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
            ..Sizes::default()
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
                model_bytes: 60_000,
                ..Sizes::default()
            },
            Some(&digest(&model))
        ));
        assert!(small.accepts(
            Sizes {
                input_bytes: 1_000,
                model_bytes: 50_000,
                ..Sizes::default()
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
