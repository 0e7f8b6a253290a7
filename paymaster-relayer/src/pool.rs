//! The relayer's own accounts: each sends through its own [`TxSender`] (its own nonce); a
//! request leases a free account for the time from its simulation to the node accepting its
//! transaction, so N accounts carry N transactions at once. An account whose STRK balance is
//! below the threshold is taken out of rotation until it is funded again.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ciro_chain::sender::TxSender;
use ciro_chain::starknet::core::types::Felt;
use ciro_chain::RpcAccount;
use tokio::sync::Notify;

/// One of the relayer's accounts.
#[derive(Debug)]
pub struct RelayerAccount {
    /// Its address.
    pub address: Felt,
    /// Its sender (nonce, sending, receipts).
    pub sender: TxSender<RpcAccount>,
    /// Whether it is in rotation (its balance is above the threshold).
    enabled: AtomicBool,
    /// Its STRK balance (FRI) when last read.
    balance: Mutex<u128>,
}

impl RelayerAccount {
    /// Whether it is in rotation.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }

    /// Its STRK balance (FRI) when last read.
    pub fn balance(&self) -> u128 {
        *self.balance.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a balance read and puts the account in or out of rotation; returns whether
    /// that changed.
    pub fn set_balance(&self, balance: u128, minimum: u128) -> bool {
        *self.balance.lock().unwrap_or_else(|p| p.into_inner()) = balance;
        let enabled = balance >= minimum;
        self.enabled.swap(enabled, Ordering::SeqCst) != enabled
    }
}

/// The accounts and which of them are free.
#[derive(Debug)]
pub struct Pool {
    accounts: Vec<Arc<RelayerAccount>>,
    free: Mutex<VecDeque<usize>>,
    released: Notify,
}

/// An account leased to one request; back in the pool when dropped.
#[derive(Debug)]
pub struct Lease {
    pool: Arc<Pool>,
    index: usize,
}

impl Lease {
    /// The leased account.
    pub fn account(&self) -> &Arc<RelayerAccount> {
        &self.pool.accounts[self.index]
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.pool
            .free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(self.index);
        // Every waiter looks again: one may be waiting for this very account.
        self.pool.released.notify_waiters();
    }
}

impl Pool {
    /// A pool of these accounts, all in rotation until their balance is read.
    pub fn new(senders: Vec<(Felt, TxSender<RpcAccount>)>) -> Arc<Self> {
        let accounts: Vec<_> = senders
            .into_iter()
            .map(|(address, sender)| {
                Arc::new(RelayerAccount {
                    address,
                    sender,
                    enabled: AtomicBool::new(true),
                    balance: Mutex::new(0),
                })
            })
            .collect();
        Arc::new(Self {
            free: Mutex::new((0..accounts.len()).collect()),
            accounts,
            released: Notify::new(),
        })
    }

    /// Every account.
    pub fn accounts(&self) -> &[Arc<RelayerAccount>] {
        &self.accounts
    }

    /// Whether an account is in rotation.
    pub fn any_enabled(&self) -> bool {
        self.accounts.iter().any(|a| a.enabled())
    }

    /// Whether `address` is one of the relayer's accounts.
    pub fn contains(&self, address: Felt) -> bool {
        self.accounts.iter().any(|a| a.address == address)
    }

    /// Wakes every waiting request (an account came back into rotation).
    pub fn wake(&self) {
        self.released.notify_waiters();
    }

    /// The account a user's default-mode execution names as its Caller (and that sends it):
    /// one in rotation, the same for a user while the rotation does not change.
    pub fn caller_for(&self, user: Felt) -> Felt {
        let enabled: Vec<Felt> = self
            .accounts
            .iter()
            .filter(|a| a.enabled())
            .map(|a| a.address)
            .collect();
        let bytes = user.to_bytes_be();
        let mut low = [0u8; 8];
        low.copy_from_slice(&bytes[24..]);
        let n = u64::from_be_bytes(low);
        if enabled.is_empty() {
            self.accounts[(n % self.accounts.len() as u64) as usize].address
        } else {
            enabled[(n % enabled.len() as u64) as usize]
        }
    }

    /// Leases a free account in rotation (`only`: that account), waiting up to `wait`.
    pub async fn lease(self: &Arc<Self>, only: Option<Felt>, wait: Duration) -> Option<Lease> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register for a release before looking, so none is missed in between.
            let released = self.released.notified();
            if let Some(index) = self.take_free(only) {
                return Some(Lease {
                    pool: self.clone(),
                    index,
                });
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return None;
            }
        }
    }

    fn take_free(&self, only: Option<Felt>) -> Option<usize> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        let position = free.iter().position(|&i| {
            self.accounts[i].enabled() && only.is_none_or(|a| self.accounts[i].address == a)
        })?;
        free.remove(position)
    }
}
