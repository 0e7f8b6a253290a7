//! The named parties of the specification suite, each one of devnet's predeployed (funded,
//! seeded) OpenZeppelin accounts.

/// A named party. The discriminant is the index of its predeployed account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Actor {
    /// Deploys the contracts and holds the admin role.
    Admin = 0,
    /// The coordinator service's account (assigns jobs).
    Coordinator = 1,
    /// Resolves disputes and challenged slashes.
    Arbiter = 2,
    /// Submits jobs and pays for them.
    Submitter = 3,
    /// A GPU worker.
    WorkerA = 4,
    /// A second GPU worker.
    WorkerB = 5,
    /// A third GPU worker.
    WorkerC = 6,
    /// Delegates stake to workers.
    Delegator = 7,
    /// Funds the paymaster.
    Sponsor = 8,
    /// Submits sponsored transactions for users.
    Relayer = 9,
    /// Holds the pauser role.
    Pauser = 10,
    /// Tries everything it should not be able to do.
    Attacker = 11,
    /// A spot-checking service: holds VERIFIER in JobMgr.
    Verifier = 12,
}

impl Actor {
    /// Every actor, in account order.
    pub const ALL: [Actor; 13] = [
        Actor::Admin,
        Actor::Coordinator,
        Actor::Arbiter,
        Actor::Submitter,
        Actor::WorkerA,
        Actor::WorkerB,
        Actor::WorkerC,
        Actor::Delegator,
        Actor::Sponsor,
        Actor::Relayer,
        Actor::Pauser,
        Actor::Attacker,
        Actor::Verifier,
    ];

    /// Index of the actor's predeployed account.
    pub fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_cover_every_predeployed_account_once() {
        let indices: Vec<usize> = Actor::ALL.iter().map(|a| a.index()).collect();
        assert_eq!(indices, (0..crate::devnet::ACCOUNTS).collect::<Vec<_>>());
    }
}
