//! Gas report: every JobMgr and CDC Pool operation, a whole job lifecycle, and `finalize_jobs`
//! over batches of 1, 10 and 50, and the lifecycle of batch jobs of 10, 32 and 100 inputs per
//! input, each next to a plain STRK `transfer` measured in the same run
//! on the same devnet. Prints L1 gas, L1 data gas, L2 gas, the fee in STRK, and the fee as a
//! ratio to the transfer's.
//!
//! Run: `cargo bench -p ciro-tests --bench gas`.

use anyhow::{Context, Result};
use ciro_chain::bindings::cdc_pool::SlashReason;
use ciro_chain::bindings::test_token::TestToken;
use ciro_chain::cainome::cairo_serde::ContractAddress;
use ciro_chain::starknet::accounts::Account;
use ciro_chain::starknet::core::types::TransactionReceipt;
use ciro_chain::tx::{call, send, TxOutcome};
use ciro_tests::fixtures::u256;
use ciro_tests::net::STRK;
use ciro_tests::system::*;
use ciro_tests::Actor;

/// A measured transaction.
#[derive(Clone, Copy, Default)]
struct Cost {
    l1_gas: u64,
    l1_data_gas: u64,
    l2_gas: u64,
    fee_fri: u128,
}

impl Cost {
    fn of(outcome: &TxOutcome) -> Self {
        let resources = match &outcome.receipt.receipt {
            TransactionReceipt::Invoke(r) => &r.execution_resources,
            other => panic!("not an invoke: {other:?}"),
        };
        Self {
            l1_gas: resources.l1_gas,
            l1_data_gas: resources.l1_data_gas,
            l2_gas: resources.l2_gas,
            fee_fri: u128::try_from(outcome.actual_fee().to_biguint()).expect("fee fits u128"),
        }
    }

    fn add(self, other: Cost) -> Cost {
        Cost {
            l1_gas: self.l1_gas + other.l1_gas,
            l1_data_gas: self.l1_data_gas + other.l1_data_gas,
            l2_gas: self.l2_gas + other.l2_gas,
            fee_fri: self.fee_fri + other.fee_fri,
        }
    }

    fn per(self, n: u64) -> Cost {
        Cost {
            l1_gas: self.l1_gas / n,
            l1_data_gas: self.l1_data_gas / n,
            l2_gas: self.l2_gas / n,
            fee_fri: self.fee_fri / u128::from(n),
        }
    }
}

struct Report {
    transfer: Cost,
    rows: Vec<(String, Cost)>,
}

impl Report {
    fn row(&mut self, name: impl Into<String>, cost: Cost) {
        self.rows.push((name.into(), cost));
    }

    fn print(&self) {
        println!(
            "| operation | L1 gas | L1 data gas | L2 gas | fee (STRK) | fee / transfer |\n|---|---:|---:|---:|---:|---:|"
        );
        let line = |name: &str, c: &Cost| {
            println!(
                "| {name} | {} | {} | {} | {:.6} | {:.2} |",
                c.l1_gas,
                c.l1_data_gas,
                c.l2_gas,
                c.fee_fri as f64 / 1e18,
                c.fee_fri as f64 / self.transfer.fee_fri as f64
            )
        };
        line("STRK transfer (baseline)", &self.transfer);
        for (name, cost) in &self.rows {
            line(name, cost);
        }
    }
}

async fn measure(
    s: &System,
    execution: ciro_chain::starknet::accounts::ExecutionV3<'_, ciro_chain::RpcAccount>,
) -> Result<Cost> {
    Ok(Cost::of(&s.send(execution).await?))
}

/// One job's four transactions after `submission` (a `submit_job` or a `submit_batch`): it
/// is assigned to WorkerA, who commits a result, and finalized after the window; the cost of
/// each, in that order.
async fn lifecycle(
    s: &System,
    submission: ciro_chain::starknet::accounts::ExecutionV3<'_, ciro_chain::RpcAccount>,
) -> Result<[Cost; 4]> {
    let submit = measure(s, submission).await?;
    let job = call(s.jobs_reader().job_count()).await?;
    let assign = measure(
        s,
        s.jobs_as(Actor::Coordinator)
            .assign_job(&job, &s.addr(Actor::WorkerA)),
    )
    .await?;
    let result = measure(s, s.jobs_as(Actor::WorkerA).submit_result(&job, &u256(7))).await?;
    s.advance(RESULT_WINDOW).await;
    let finalize = measure(s, s.jobs_as(Actor::Attacker).finalize(&job)).await?;
    Ok([submit, assign, result, finalize])
}

/// `n` jobs of `model` completed by WorkerA (submitted, assigned and answered in three
/// multicalls); their ids.
async fn completed_jobs(s: &System, model: u64, n: usize) -> Result<Vec<u64>> {
    let first = call(s.jobs_reader().job_count()).await? + 1;
    let ids: Vec<u64> = (first..first + n as u64).collect();
    let deadline = s.net.now().await? + 3_600;
    let submitter = s.net.account(Actor::Submitter);
    let jm = ciro_chain::bindings::job_mgr::JobMgr::new(s.job_mgr, &submitter);
    let calls = ids
        .iter()
        .map(|_| jm.submit_job_getcall(&model, &u256(1), &u256(JOB_FEE), &deadline, &no_options()))
        .collect();
    send(&s.net.provider, submitter.execute_v3(calls)).await?;
    let batch: Vec<_> = ids
        .iter()
        .map(|id| ciro_chain::bindings::job_mgr::Assignment {
            job_id: *id,
            worker: s.addr(Actor::WorkerA),
        })
        .collect();
    s.send(s.jobs_as(Actor::Coordinator).assign_jobs(&batch))
        .await?;
    let worker = s.net.account(Actor::WorkerA);
    let wj = ciro_chain::bindings::job_mgr::JobMgr::new(s.job_mgr, &worker);
    let calls = ids
        .iter()
        .map(|id| wj.submit_result_getcall(id, &u256(2)))
        .collect();
    send(&s.net.provider, worker.execute_v3(calls)).await?;
    Ok(ids)
}

async fn run() -> Result<()> {
    let s = System::deploy().await.context("deploying the system")?;
    s.fund(Actor::Submitter, 100_000_000).await?;
    let mut report = Report {
        transfer: Cost::default(),
        rows: Vec::new(),
    };

    // Baseline: a plain STRK transfer between two funded accounts.
    let submitter = s.net.account(Actor::Submitter);
    let strk = TestToken::new(STRK, &submitter);
    let transfer = send(
        &s.net.provider,
        strk.transfer(
            &ContractAddress(s.net.address(Actor::Attacker)),
            &u256(1_000),
        ),
    )
    .await?;
    report.transfer = Cost::of(&transfer);

    // The pool.
    let worker_a = s.pool_as(Actor::WorkerA);
    report.row(
        "CdcPool.register_worker",
        measure(&s, worker_a.register_worker(&h100(), &felt(1))).await?,
    );
    report.row(
        "CdcPool.stake",
        measure(&s, worker_a.stake(&u256(2 * MIN_STAKE[3]))).await?,
    );
    report.row(
        "CdcPool.heartbeat",
        measure(&s, worker_a.heartbeat()).await?,
    );
    s.worker(Actor::WorkerB, &h100(), 0).await;
    report.row(
        "CdcPool.delegate",
        measure(
            &s,
            s.pool_as(Actor::Delegator)
                .delegate(&s.addr(Actor::WorkerA), &u256(1_000)),
        )
        .await?,
    );
    // Stake and delegations earn once their warm-up is over and they are activated.
    s.advance(WARMUP).await;
    report.row(
        "CdcPool.activate",
        measure(&s, worker_a.activate(&s.addr(Actor::WorkerA))).await?,
    );
    s.activate_delegation(Actor::Delegator, Actor::WorkerA)
        .await;
    report.row(
        "CdcPool.notify_reward",
        measure(&s, s.pool_as(Actor::Attacker).notify_reward(&u256(1_000))).await?,
    );
    report.row(
        "CdcPool.claim_rewards",
        measure(&s, worker_a.claim_rewards()).await?,
    );

    // A job's life, unbatched.
    let model_cost = measure(
        &s,
        s.jobs_as(Actor::Admin)
            .register_model(&u256(0x5eed), &requirements(), &u256(MODEL_PRICE)),
    )
    .await?;
    report.row("JobMgr.register_model", model_cost);
    let model = 1;
    let deadline = s.net.now().await? + 3_600;
    let submitter_jobs = s.jobs_as(Actor::Submitter);
    let [submit, assign, result, finalize] = lifecycle(
        &s,
        submitter_jobs.submit_job(&model, &u256(1), &u256(JOB_FEE), &deadline, &no_options()),
    )
    .await?;
    report.row("JobMgr.submit_job", submit);
    report.row("JobMgr.assign_job", assign);
    report.row("JobMgr.submit_result", result);
    report.row("JobMgr.finalize", finalize);
    report.row(
        "**lifecycle** (submit + assign + result + finalize)",
        submit.add(assign).add(result).add(finalize),
    );

    // Disputes.
    let disputed = completed_jobs(&s, model, 1).await?[0];
    report.row(
        "JobMgr.open_dispute",
        measure(
            &s,
            s.jobs_as(Actor::Submitter)
                .open_dispute(&disputed, &felt(1)),
        )
        .await?,
    );
    report.row(
        "JobMgr.resolve_dispute (at fault, slash)",
        measure(
            &s,
            s.jobs_as(Actor::Arbiter)
                .resolve_dispute(&disputed, &true, &1_000),
        )
        .await?,
    );
    report.row(
        "CdcPool.slash (slasher, pending)",
        measure(
            &s,
            s.pool_as(SLASHER).slash(
                &s.addr(Actor::WorkerB),
                &SlashReason::Unavailable,
                &0,
                &felt(1),
                &nobody(),
                &u256(0),
            ),
        )
        .await?,
    );
    report.row(
        "CdcPool.unstake_intent",
        measure(&s, worker_a.unstake_intent(&u256(1))).await?,
    );

    // Batched finalization.
    s.send(s.pool_as(Actor::WorkerA).stake(&u256(1))).await?;
    for n in [1usize, 10, 50] {
        let ids = completed_jobs(&s, model, n).await?;
        s.advance(RESULT_WINDOW).await;
        let cost = measure(&s, s.jobs_as(Actor::Attacker).finalize_jobs(&ids)).await?;
        report.row(
            format!("JobMgr.finalize_jobs batch {n}, per job"),
            cost.per(n as u64),
        );
    }

    // Batches: one job of many inputs, its four transactions divided by its inputs.
    for items in [10u32, 32, 100] {
        let deadline = s.net.now().await? + 3_600;
        let [submit, assign, result, finalize] = lifecycle(
            &s,
            submitter_jobs.submit_batch(
                &model,
                &u256(1),
                &items,
                &u256(JOB_FEE * u128::from(items)),
                &deadline,
                &no_options(),
            ),
        )
        .await?;
        if items == 32 {
            report.row("JobMgr.submit_batch (32 inputs)", submit);
        }
        report.row(
            format!("**batch lifecycle**, {items} inputs, per input"),
            submit
                .add(assign)
                .add(result)
                .add(finalize)
                .per(u64::from(items)),
        );
    }
    report.print();
    Ok(())
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; this binary has no options.
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run())
}
