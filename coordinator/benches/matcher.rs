//! `cargo bench -p ciro-coordinator --bench matcher`: the matcher's decision time for 10,000
//! queued jobs against 100, 1,000 and 10,000 live workers, per job, and its ratio to the
//! 100-worker case measured in the same run. The per-job cost must stay flat: at most 1.5x
//! from 100 to 10,000 workers (the process exits 1 otherwise).
//!
//! The matcher keeps its worker table and job classes across ticks, as the coordinator's
//! operator does: each round is a tick, the workers' capacity given back first (the jobs of the
//! last round finished: [`Matcher::sync`], timed apart as the table's upkeep), then the plan
//! (the decision, timed; the target is on the best of the rounds, as before the matcher kept
//! its state). Beside it the tables show the median plan, the first plan (which builds the
//! job classes, one pass over the workers each), the upkeep, and the whole tick (upkeep and
//! plan, median) with its own ratio: the upkeep reads every live worker (a comparison each)
//! and re-files those that changed, here every worker the last round gave a job, so the
//! whole tick is not flat (no target on it; the operator's database read of the live workers,
//! outside both, is not flat either).
//!
//! The workload: jobs of 4 models with different requirements (VRAM, flags, stake tier), and
//! workers of mixed VRAM, flags, tiers, reputations and capacities (1 to 4), a quarter of them
//! holding each model, so classes, eligibility, warm models and capacity all take part.
//!
//! A second table (no target, for the README) holds the workers at 10,000 and spreads the
//! 10,000 jobs over 4, 20 and 100 models, each with requirements of its own: a job class is one
//! pass over the live workers when it is built, and a worker that changed is re-filed in each
//! class, so the first plan and the upkeep grow with the classes a tick sees.

use std::time::Instant;

use ciro_api::wire::Digest;

use ciro_coordinator::eligibility::Requirements;
use ciro_coordinator::matcher::{Candidate, Matcher, QueuedJob, Sizes};
use ciro_coordinator::store::WorkerRow;

const JOBS: usize = 10_000;
const ROUNDS: usize = 20;

/// A small deterministic generator (xorshift), so every run sees the same workload.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn model_hash(model: usize) -> String {
    format!("{model:04x}").repeat(16)
}

fn model_digest(model: usize) -> Digest {
    model_hash(model).parse().expect("a digest")
}

/// `n` workers; with `models` = 4 each holds each model with chance 1/4, with more each holds
/// up to 3 models drawn among them.
fn workers(n: usize, models: usize, rng: &mut Rng) -> Vec<Candidate> {
    (0..n)
        .map(|i| {
            let capacity = 1 + (rng.next() % 4) as u32;
            let mut models: Vec<Digest> = if models == 4 {
                (0..4)
                    .filter(|_| rng.next() % 4 == 0)
                    .map(model_digest)
                    .collect()
            } else {
                (0..rng.next() % 4)
                    .map(|_| model_digest((rng.next() % models as u64) as usize))
                    .collect()
            };
            models.sort_unstable();
            models.dedup();
            Candidate {
                row: WorkerRow {
                    address: format!("{i:#x}"),
                    state: if rng.next() % 20 == 0 {
                        "Inactive"
                    } else {
                        "Active"
                    }
                    .into(),
                    gpu_model: "GPU".into(),
                    vram_mb: [8_000, 16_000, 24_000, 80_000][(rng.next() % 4) as usize],
                    compute_capability: 90,
                    flags: rng.next() % 8,
                    stake: "0x1".into(),
                    hardware_tier: 2,
                    stake_tier: rng.next() % 4,
                    score: rng.next() % 10_001,
                    last_heartbeat: 0,
                    info: "{}".into(),
                },
                spare: capacity,
                capacity,
                avg_latency_secs: rng.next() % 600,
                models,
                max_input_bytes: None,
                max_model_bytes: None,
                max_batch_items: None,
            }
        })
        .collect()
}

/// `JOBS` jobs of `models` models; models past the first 4 repeat their requirements with a
/// reputation minimum of their own, so each model is a class.
fn jobs(models: usize, rng: &mut Rng) -> Vec<QueuedJob> {
    (0..JOBS as u64)
        .map(|job_id| {
            let model = (rng.next() % models as u64) as usize;
            let kind = model % 4;
            QueuedJob {
                job_id,
                model_hash: model_hash(model),
                requirements: Requirements {
                    min_vram_mb: [0, 8_000, 16_000, 24_000][kind],
                    required_flags: [0, 1, 2, 3][kind],
                    min_stake_tier: [0, 0, 1, 1][kind],
                    min_score: (model / 4) as u64 * 50,
                },
                sizes: Sizes::default(),
            }
        })
        .collect()
}

/// What [`measure`] found, in nanoseconds per job: the best plan and the median one of the
/// rounds after the first, the first (which builds the classes), and the median whole tick
/// (upkeep and plan); the median upkeep (sync) in microseconds; and the jobs assigned.
struct Measured {
    best: f64,
    median: f64,
    first: f64,
    tick: f64,
    upkeep_us: f64,
    assigned: usize,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// `ROUNDS` ticks of one matcher: each gives back the capacity the last plan took (a sync
/// with the workers as they were) and plans the same jobs again.
fn measure(queued: &[QueuedJob], candidates: &[Candidate]) -> Measured {
    let mut matcher = Matcher::new();
    let (mut plans, mut upkeeps, mut ticks) = (Vec::new(), Vec::new(), Vec::new());
    let (mut first, mut assigned) = (0.0, 0);
    for round in 0..ROUNDS {
        let start = Instant::now();
        matcher.sync(candidates);
        let upkeep = start.elapsed().as_nanos() as f64;
        let start = Instant::now();
        let decided = matcher.plan(queued, round, |_, _, _| false);
        let plan = start.elapsed().as_nanos() as f64;
        assigned = decided.assignments.len();
        if round == 0 {
            first = plan / JOBS as f64;
            continue;
        }
        plans.push(plan / JOBS as f64);
        upkeeps.push(upkeep / 1_000.0);
        ticks.push((upkeep + plan) / JOBS as f64);
    }
    Measured {
        best: plans.iter().copied().fold(f64::MAX, f64::min),
        median: median(plans),
        first,
        tick: median(ticks),
        upkeep_us: median(upkeeps),
        assigned,
    }
}

fn main() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let queued = jobs(4, &mut rng);
    let mut baseline = None;
    let mut worst: f64 = 0.0;
    let header = "| assigned | ns per job, best | ratio | ns per job, median | first plan, ns per job | upkeep per tick, µs | whole tick, ns per job | ratio |";
    let rule = "|---:|---:|---:|---:|---:|---:|---:|---:|---:|";
    println!("| live workers {header}\n{rule}");
    let mut tick_baseline = None;
    for n in [100, 1_000, 10_000] {
        let candidates = workers(n, 4, &mut rng);
        let m = measure(&queued, &candidates);
        let ratio = m.best / *baseline.get_or_insert(m.best);
        let tick_ratio = m.tick / *tick_baseline.get_or_insert(m.tick);
        worst = worst.max(ratio);
        println!(
            "| {n} | {} | {:.0} | {ratio:.2} | {:.0} | {:.0} | {:.0} | {:.0} | {tick_ratio:.2} |",
            m.assigned, m.best, m.median, m.first, m.upkeep_us, m.tick
        );
    }
    println!();
    println!("| models (classes), 10,000 workers {header}\n{rule}");
    let (mut baseline, mut tick_baseline) = (None, None);
    for models in [4, 20, 100] {
        let queued = jobs(models, &mut rng);
        let candidates = workers(10_000, models, &mut rng);
        let m = measure(&queued, &candidates);
        let ratio = m.best / *baseline.get_or_insert(m.best);
        let tick_ratio = m.tick / *tick_baseline.get_or_insert(m.tick);
        println!(
            "| {models} | {} | {:.0} | {ratio:.2} | {:.0} | {:.0} | {:.0} | {:.0} | {tick_ratio:.2} |",
            m.assigned, m.best, m.median, m.first, m.upkeep_us, m.tick
        );
    }
    if worst > 1.5 {
        eprintln!("the per-job cost grew {worst:.2}x from 100 to 10,000 workers (target: 1.5x)");
        std::process::exit(1);
    }
}
