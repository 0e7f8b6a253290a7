//! The matcher: which live worker gets which queued job.
//!
//! [`plan`] is the decision, pure and in memory. Jobs are grouped into classes (same
//! requirements, same model); for each class met for the first time, every live worker with
//! spare capacity is checked once against the on-chain eligibility rule
//! ([`crate::eligibility::check`]) and filed in a bucket queue by its priority. Each job then
//! takes the front worker of its class's highest non-empty bucket — O(1) per job, found by the
//! buckets' bit mask — and the worker goes to the back of the bucket its spare capacity now
//! gives it, so equals take turns (fairness) and a busy worker sinks. A worker's capacity is
//! shared between classes: a stale entry (capacity taken by another class) is re-filed or
//! dropped when it comes up. The cost per job is flat in the number of workers (the benchmark
//! `cargo bench -p ciro-coordinator --bench matcher` checks it).
//!
//! Priority, 0 to 63 (higher first): reputation score (0 to 32), the job's model already in
//! the worker's store (16: no download), low average latency (0 to 7), and spare capacity as a
//! share of capacity (0 to 8).
//!
//! [`explain`] answers "why is this job not matched yet" with the same rule.

use std::collections::{HashMap, HashSet, VecDeque};

use ciro_api::coordinator::{Requirement, UnmatchedReason, UnmetRequirement};

use crate::eligibility::{self, Ineligible, Requirements};
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
    /// SHA-256 digests (64 hex) of the models in its local store.
    pub models: HashSet<String>,
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
}

/// What [`plan`] decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// `(job id, index of the worker in the candidates)`, in the jobs' order.
    pub assignments: Vec<(u64, usize)>,
    /// Jobs left queued: no eligible worker with spare capacity.
    pub unassigned: Vec<u64>,
}

const LEVELS: usize = 64;

/// Jobs of one class share requirements and model.
type ClassKey<'a> = (Requirements, &'a str);

/// A worker's priority for a job class.
fn priority(candidate: &Candidate, spare: u32, warm: bool) -> usize {
    let reputation = (candidate.row.score.min(10_000) * 32 / 10_000) as usize;
    let warm = if warm { 16 } else { 0 };
    let speed = 7 - (candidate.avg_latency_secs / 60).min(7) as usize;
    let room = if candidate.capacity == 0 {
        0
    } else {
        (u64::from(spare) * 8 / u64::from(candidate.capacity)).min(8) as usize
    };
    (reputation + warm + speed + room).min(LEVELS - 1)
}

/// The bucket queue of one job class.
struct Class {
    buckets: Vec<VecDeque<usize>>,
    mask: u64,
}

impl Class {
    /// The class of `job`: its eligible workers with spare capacity, filed by priority.
    fn new(
        job: &QueuedJob,
        candidates: &[Candidate],
        spare: &[u32],
        offset: usize,
    ) -> (Self, Vec<bool>) {
        let mut class = Self {
            buckets: (0..LEVELS).map(|_| VecDeque::new()).collect(),
            mask: 0,
        };
        let mut warm_of = vec![false; candidates.len()];
        let n = candidates.len();
        // Start at a rotating offset: equals are not always taken in address order.
        for i in (0..n).map(|k| (k + offset) % n.max(1)) {
            let candidate = &candidates[i];
            if spare[i] == 0 || !eligibility::eligible(&candidate.row, &job.requirements) {
                continue;
            }
            let warm = candidate.models.contains(&job.model_hash);
            warm_of[i] = warm;
            class.push(priority(candidate, spare[i], warm), i);
        }
        (class, warm_of)
    }

    fn push(&mut self, level: usize, worker: usize) {
        self.buckets[level].push_back(worker);
        self.mask |= 1 << level;
    }

    fn pop(&mut self) -> Option<(usize, usize)> {
        while self.mask != 0 {
            let level = 63 - self.mask.leading_zeros() as usize;
            match self.buckets[level].pop_front() {
                Some(worker) => {
                    if self.buckets[level].is_empty() {
                        self.mask &= !(1 << level);
                    }
                    return Some((level, worker));
                }
                None => self.mask &= !(1 << level),
            }
        }
        None
    }
}

/// Assigns `jobs` (in order: oldest first) to `candidates`. `rotation` varies the order in
/// which equal workers are first considered (pass the tick number).
pub fn plan(jobs: &[QueuedJob], candidates: &[Candidate], rotation: usize) -> Plan {
    let mut spare: Vec<u32> = candidates.iter().map(|c| c.spare).collect();
    let mut classes: HashMap<ClassKey<'_>, (Class, Vec<bool>)> = HashMap::new();
    let mut result = Plan::default();
    for job in jobs {
        let key = (job.requirements, job.model_hash.as_str());
        let (class, warm_of) = classes
            .entry(key)
            .or_insert_with(|| Class::new(job, candidates, &spare, rotation));
        let mut chosen = None;
        while let Some((level, worker)) = class.pop() {
            if spare[worker] == 0 {
                continue; // Taken by another class: drop it.
            }
            let warm = warm_of[worker];
            let now = priority(&candidates[worker], spare[worker], warm);
            if now < level {
                class.push(now, worker); // Its priority fell meanwhile: re-file it.
                continue;
            }
            chosen = Some((worker, warm));
            break;
        }
        match chosen {
            Some((worker, warm)) => {
                spare[worker] -= 1;
                if spare[worker] > 0 {
                    class.push(priority(&candidates[worker], spare[worker], warm), worker);
                }
                result.assignments.push((job.job_id, worker));
            }
            None => result.unassigned.push(job.job_id),
        }
    }
    result
}

/// Why a queued job with its data present is not assigned, given the live workers (most
/// blocking first): no live worker; requirements no live worker meets (each with the closest
/// offer); eligible workers all busy; or nothing (the next tick will take it).
pub fn explain(requirements: &Requirements, candidates: &[Candidate]) -> UnmatchedReason {
    if candidates.is_empty() {
        return UnmatchedReason::NoLiveWorkers;
    }
    let mut eligible = 0u32;
    let mut with_room = 0u32;
    for candidate in candidates {
        if eligibility::check(&candidate.row, requirements).is_ok() {
            eligible += 1;
            if candidate.spare > 0 {
                with_room += 1;
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
    if with_room == 0 {
        return UnmatchedReason::EligibleWorkersBusy { eligible };
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
    }
}

/// The first rule `candidate` fails for `requirements` (for logs).
pub fn why_not(candidate: &Candidate, requirements: &Requirements) -> Option<Ineligible> {
    eligibility::check(&candidate.row, requirements).err()
}

#[cfg(test)]
mod tests {
    use super::*;

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
            models: HashSet::new(),
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
        warm.models.insert("aa".repeat(32));
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
        let reason = explain(&needs(40_000), &workers);
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
            explain(&needs(16_000), &workers),
            UnmatchedReason::EligibleWorkersBusy { eligible: 1 }
        );
        assert_eq!(
            explain(&needs(0), &workers),
            UnmatchedReason::AwaitingMatcher
        );
        assert_eq!(explain(&needs(0), &[]), UnmatchedReason::NoLiveWorkers);
    }
}
