//! The pool's eligibility rule (`CdcPool.is_eligible`), mirrored over the index, so the
//! matcher filters candidates without a chain call per pair and can say *why* a worker does not
//! qualify. The rule, in the contract's order: the worker is `Active`; its VRAM is at least the
//! job's; it has every required capability flag; its reputation score is at least the job's
//! minimum; its own stake meets some tier (not `NO_TIER`) and that tier is at least the job's.
//!
//! A test checks this mirror against the contract's own view on randomized cases; the chain
//! stays the judge (`assign_jobs` skips an assignment the contract refuses).

use std::fmt;

use crate::store::WorkerRow;

/// The stake tier the pool reports when a worker's own stake meets no tier's minimum.
pub const NO_TIER: u64 = 255;

/// What a job requires of its worker (its on-chain snapshot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Requirements {
    /// Least VRAM, in MB.
    pub min_vram_mb: u64,
    /// Capability flags the worker must all have.
    pub required_flags: u64,
    /// Least stake tier.
    pub min_stake_tier: u64,
    /// Least reputation score.
    pub min_score: u64,
}

/// Why a worker is not eligible: the first rule it fails, in the contract's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ineligible {
    /// Not `Active` (inactive, exiting, banned or unregistered).
    NotActive {
        /// Its state, as the contract names it.
        state: String,
    },
    /// Too little VRAM.
    Vram {
        /// The worker's VRAM, in MB.
        has: u64,
        /// The job's minimum, in MB.
        needs: u64,
    },
    /// Missing capability flags.
    Flags {
        /// The required bits it lacks.
        missing: u64,
    },
    /// Reputation score too low.
    Score {
        /// The worker's score.
        has: u64,
        /// The job's minimum.
        needs: u64,
    },
    /// Own stake below every tier's minimum.
    NoStakeTier,
    /// Stake tier too low.
    StakeTier {
        /// The worker's stake tier.
        has: u64,
        /// The job's minimum.
        needs: u64,
    },
}

impl fmt::Display for Ineligible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ineligible::NotActive { state } => write!(f, "the worker is {state}, not Active"),
            Ineligible::Vram { has, needs } => write!(f, "{has} MB of VRAM, {needs} MB needed"),
            Ineligible::Flags { missing } => {
                let names: Vec<&str> = ciro_protocol::flags::NAMED
                    .iter()
                    .filter(|(_, bit)| missing & bit != 0)
                    .map(|(name, _)| *name)
                    .collect();
                write!(f, "lacks the capability flags {}", names.join(", "))
            }
            Ineligible::Score { has, needs } => write!(f, "reputation {has}, {needs} needed"),
            Ineligible::NoStakeTier => write!(f, "its own stake meets no tier's minimum"),
            Ineligible::StakeTier { has, needs } => write!(f, "stake tier {has}, {needs} needed"),
        }
    }
}

/// What the rule reads of a worker, as plain numbers: the matcher files every live worker for
/// every job class each tick, so it reads these rather than the row's strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    /// `Active`, with an own stake that meets some tier.
    open: bool,
    vram_mb: u64,
    flags: u64,
    stake_tier: u64,
    score: u64,
}

impl Profile {
    /// The profile of `worker`.
    pub fn of(worker: &WorkerRow) -> Self {
        Self {
            open: may_take_jobs(worker),
            vram_mb: worker.vram_mb,
            flags: worker.flags,
            stake_tier: worker.stake_tier,
            score: worker.score,
        }
    }

    /// A profile that meets no requirements (a place no worker holds).
    pub fn closed() -> Self {
        Self {
            open: false,
            vram_mb: 0,
            flags: 0,
            stake_tier: 0,
            score: 0,
        }
    }

    /// [`check`] as a yes or no, without building the reason (the matcher's hot path).
    #[inline(always)]
    pub fn meets(&self, requirements: &Requirements) -> bool {
        self.open
            && self.vram_mb >= requirements.min_vram_mb
            && requirements.required_flags & !self.flags == 0
            && self.score >= requirements.min_score
            && self.stake_tier >= requirements.min_stake_tier
    }
}

/// Whether `worker` can be offered any job at all: `Active`, with an own stake that meets
/// some tier. Only such a worker (or one finishing a job assigned to it) is taken as live by
/// the coordinator: a registration alone costs no stake.
pub fn may_take_jobs(worker: &WorkerRow) -> bool {
    worker.state == "Active" && worker.stake_tier != NO_TIER
}

/// [`check`] as a yes or no.
pub fn eligible(worker: &WorkerRow, requirements: &Requirements) -> bool {
    Profile::of(worker).meets(requirements)
}

/// Whether `worker` may take a job requiring `requirements`, as `CdcPool.is_eligible` decides.
pub fn check(worker: &WorkerRow, requirements: &Requirements) -> Result<(), Ineligible> {
    if worker.state != "Active" {
        return Err(Ineligible::NotActive {
            state: worker.state.clone(),
        });
    }
    if worker.vram_mb < requirements.min_vram_mb {
        return Err(Ineligible::Vram {
            has: worker.vram_mb,
            needs: requirements.min_vram_mb,
        });
    }
    let missing = requirements.required_flags & !worker.flags;
    if missing != 0 {
        return Err(Ineligible::Flags { missing });
    }
    if worker.score < requirements.min_score {
        return Err(Ineligible::Score {
            has: worker.score,
            needs: requirements.min_score,
        });
    }
    if worker.stake_tier == NO_TIER {
        return Err(Ineligible::NoStakeTier);
    }
    if worker.stake_tier < requirements.min_stake_tier {
        return Err(Ineligible::StakeTier {
            has: worker.stake_tier,
            needs: requirements.min_stake_tier,
        });
    }
    Ok(())
}

/// A small deterministic generator for the randomized tests (xorshift): each call gives a
/// number below its bound.
#[cfg(test)]
pub(crate) fn test_rng(mut seed: u64) -> impl FnMut(u64) -> u64 {
    move |bound| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % bound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker() -> WorkerRow {
        WorkerRow {
            address: "0x1".into(),
            state: "Active".into(),
            gpu_model: "H100".into(),
            vram_mb: 81_920,
            compute_capability: 90,
            flags: 0b0111,
            stake: "0x1".into(),
            hardware_tier: 3,
            stake_tier: 2,
            score: 5_000,
            last_heartbeat: 0,
            info: "{}".into(),
        }
    }

    fn needs(
        min_vram_mb: u64,
        required_flags: u64,
        min_stake_tier: u64,
        min_score: u64,
    ) -> Requirements {
        Requirements {
            min_vram_mb,
            required_flags,
            min_stake_tier,
            min_score,
        }
    }

    #[test]
    fn each_rule_is_reported_in_the_contracts_order() {
        let w = worker();
        assert_eq!(check(&w, &needs(81_920, 0b0111, 2, 5_000)), Ok(()));
        let inactive = WorkerRow {
            state: "Exiting".into(),
            ..worker()
        };
        // Every rule fails, the state is reported.
        assert_eq!(
            check(&inactive, &needs(u64::MAX, u64::MAX, 9, u64::MAX)),
            Err(Ineligible::NotActive {
                state: "Exiting".into()
            })
        );
        assert_eq!(
            check(&w, &needs(81_921, 0, 0, 0)),
            Err(Ineligible::Vram {
                has: 81_920,
                needs: 81_921
            })
        );
        assert_eq!(
            check(&w, &needs(0, 0b11000, 0, 0)),
            Err(Ineligible::Flags { missing: 0b11000 })
        );
        assert_eq!(
            check(&w, &needs(0, 0, 0, 5_001)),
            Err(Ineligible::Score {
                has: 5_000,
                needs: 5_001
            })
        );
        assert_eq!(
            check(&w, &needs(0, 0, 3, 0)),
            Err(Ineligible::StakeTier { has: 2, needs: 3 })
        );
        let unstaked = WorkerRow {
            stake_tier: NO_TIER,
            ..worker()
        };
        assert_eq!(
            check(&unstaked, &needs(0, 0, 0, 0)),
            Err(Ineligible::NoStakeTier)
        );
    }

    #[test]
    fn the_profile_decides_as_the_checked_rule_on_random_cases() {
        let mut next = test_rng(0x2545_f491_4f6c_dd1d);
        let states = ["Active", "Inactive", "Exiting", "Banned"];
        let mut agreed = [0u32; 2];
        for _ in 0..20_000 {
            let w = WorkerRow {
                state: states[next(4) as usize].into(),
                vram_mb: next(4) * 16_000,
                flags: next(16),
                stake_tier: [0, 1, 2, 3, NO_TIER][next(5) as usize],
                score: next(10_001),
                ..worker()
            };
            let r = needs(next(4) * 16_000, next(16), next(4), next(10_001));
            let yes = check(&w, &r).is_ok();
            assert_eq!(eligible(&w, &r), yes, "{w:?} {r:?}");
            agreed[usize::from(yes)] += 1;
        }
        // Both answers occur, so the agreement means something.
        assert!(agreed[0] > 100 && agreed[1] > 100, "{agreed:?}");
    }

    #[test]
    fn reasons_read_as_sentences() {
        assert_eq!(
            Ineligible::Flags { missing: 0b10010 }.to_string(),
            "lacks the capability flags FP16, TEE"
        );
        assert_eq!(
            Ineligible::Vram { has: 8, needs: 16 }.to_string(),
            "8 MB of VRAM, 16 MB needed"
        );
    }
}
