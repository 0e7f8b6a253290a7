//! CIRO's protocol constants, defined once in Rust for every crate (the engine's hardware
//! report, the chain clients, deployment, the CLI, the services and the tests). They mirror
//! values the Cairo contracts define; a test reads the Cairo sources and fails when the two
//! disagree.
//!
//! Light dependencies only (serde, sha2): the inference engine and the API types use these
//! without depending on the chain layer.

mod digest;

pub use digest::{manifest_of, parse_manifest, Digest, DigestParseError};

/// Capability flag bits (u64 bitfield) shared by a model's requirements and a worker's
/// capabilities (`cairo/src/common/types.cairo`, `FLAG_*`).
pub mod flags {
    /// An NVIDIA GPU usable through CUDA.
    pub const CUDA: u64 = 1 << 0;
    /// Fast half precision (compute capability >= 6.0).
    pub const FP16: u64 = 1 << 1;
    /// bfloat16 tensor cores (compute capability >= 8.0).
    pub const BF16: u64 = 1 << 2;
    /// INT8 dot products (compute capability >= 6.1).
    pub const INT8: u64 = 1 << 3;
    /// Confidential computing (a trusted execution environment) enabled on the GPU.
    pub const TEE: u64 = 1 << 4;
    /// Every known flag: the contracts refuse any other bit wherever flags are declared or
    /// required.
    pub const ALL: u64 = CUDA | FP16 | BF16 | INT8 | TEE;
    /// Each flag with its name (the Cairo constant's name without `FLAG_`).
    pub const NAMED: [(&str, u64); 5] = [
        ("CUDA", CUDA),
        ("FP16", FP16),
        ("BF16", BF16),
        ("INT8", INT8),
        ("TEE", TEE),
    ];
}

/// Governance roles, as the Cairo short strings the contracts store
/// (`cairo/src/common/governance.cairo`, `*_ROLE`). Use the chain crate's `role_felt` for the
/// felt.
pub mod roles {
    /// Pauses and unpauses a contract (granted at once, even after the seal).
    pub const PAUSER: &str = "PAUSER";
    /// JobMgr: assigns, releases and finalizes jobs (the coordinator's account).
    pub const COORDINATOR: &str = "COORDINATOR";
    /// JobMgr and CDC Pool: resolves disputes and challenged slashes.
    pub const ARBITER: &str = "ARBITER";
    /// CDC Pool: proposes slashes.
    pub const SLASHER: &str = "SLASHER";
    /// CDC Pool: held by JobMgr, which holds stake at risk and records outcomes.
    pub const JOB_MANAGER: &str = "JOB_MANAGER";
    /// JobMgr: may contest a completed job's result within its window.
    pub const VERIFIER: &str = "VERIFIER";
    /// Every role.
    pub const ALL: [&str; 6] = [PAUSER, COORDINATOR, ARBITER, SLASHER, JOB_MANAGER, VERIFIER];
}

/// One token of an 18-decimal ERC-20 (the payment token, STRK), in its smallest unit.
pub const TOKEN: u128 = 1_000_000_000_000_000_000;

/// The contracts of a deployment, by the names the manifest records them under (and the
/// classes' names), in deployment order.
pub mod contracts {
    /// The project's test ERC-20 (devnet only).
    pub const TEST_TOKEN: &str = "TestToken";
    /// The CDC Pool.
    pub const CDC_POOL: &str = "CdcPool";
    /// JobMgr.
    pub const JOB_MGR: &str = "JobMgr";
    /// The Paymaster.
    pub const PAYMASTER: &str = "Paymaster";
    /// Every contract, in deployment order.
    pub const ALL: [&str; 4] = [TEST_TOKEN, CDC_POOL, JOB_MGR, PAYMASTER];
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// `const NAME: type = value;` of a Cairo source, value as written.
    fn cairo_const(file: &str, name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../cairo/src")
            .join(file);
        let text = std::fs::read_to_string(&path).expect("the Cairo sources");
        let prefix = format!("const {name}:");
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&prefix))
            .unwrap_or_else(|| panic!("{name} is not defined in {}", path.display()));
        let value = line.split('=').nth(1).expect("a value").trim();
        value.trim_end_matches(';').trim().to_owned()
    }

    #[test]
    fn capability_flags_match_the_contracts() {
        for (name, bit) in flags::NAMED {
            let cairo = cairo_const("common/types.cairo", &format!("FLAG_{name}"));
            assert_eq!(cairo.parse::<u64>().ok(), Some(bit), "FLAG_{name}");
        }
        let all = cairo_const("common/types.cairo", "ALL_FLAGS");
        assert_eq!(all.parse::<u64>().ok(), Some(flags::ALL));
    }

    #[test]
    fn role_names_match_the_contracts() {
        for role in roles::ALL {
            let cairo = cairo_const("common/governance.cairo", &format!("{role}_ROLE"));
            assert_eq!(cairo, format!("'{role}'"), "{role}_ROLE");
        }
    }
}
