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
    /// Requests waiting for one account in particular (a default-mode Caller), by account
    /// address: other requests leave that account to them when another is free.
    pinned: Mutex<std::collections::HashMap<Felt, usize>>,
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
            pinned: Mutex::default(),
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
        self.lease_avoiding(only, |_| false, wait).await
    }

    /// [`Pool::lease`], passing over the accounts `avoid` names (by address).
    pub async fn lease_avoiding(
        self: &Arc<Self>,
        only: Option<Felt>,
        avoid: impl Fn(Felt) -> bool,
        wait: Duration,
    ) -> Option<Lease> {
        let deadline = tokio::time::Instant::now() + wait;
        let _pin = only.map(|address| Pin::new(self, address));
        loop {
            // Register for a release before looking, so none is missed in between.
            let released = self.released.notified();
            if let Some(index) = self.take_free(only, &avoid) {
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

    fn take_free(&self, only: Option<Felt>, avoid: &impl Fn(Felt) -> bool) -> Option<usize> {
        let pinned = self
            .pinned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        let usable = |i: usize| {
            self.accounts[i].enabled()
                && only.is_none_or(|a| self.accounts[i].address == a)
                && !avoid(self.accounts[i].address)
        };
        // Any-account requests prefer an account nobody is waiting for in particular.
        let position = free
            .iter()
            .position(|&i| {
                usable(i) && (only.is_some() || !pinned.contains_key(&self.accounts[i].address))
            })
            .or_else(|| free.iter().position(|&i| usable(i)))?;
        free.remove(position)
    }
}

/// A request waiting for one account in particular, counted while it waits.
struct Pin<'a> {
    pool: &'a Pool,
    address: Felt,
}

impl<'a> Pin<'a> {
    fn new(pool: &'a Pool, address: Felt) -> Self {
        *pool
            .pinned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(address)
            .or_default() += 1;
        Self { pool, address }
    }
}

impl Drop for Pin<'_> {
    fn drop(&mut self) {
        let mut pinned = self.pool.pinned.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = pinned.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                pinned.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ciro_chain::sender::SenderConfig;
    use ciro_chain::starknet::accounts::{ExecutionEncoding, SingleOwnerAccount};
    use ciro_chain::starknet::providers::jsonrpc::HttpTransport;
    use ciro_chain::starknet::providers::JsonRpcClient;
    use ciro_chain::starknet::signers::{LocalWallet, SigningKey};

    /// A pool over accounts nobody talks to (nothing here calls the node).
    fn pool(n: u8) -> Arc<Pool> {
        let url = url::Url::parse("http://127.0.0.1:9/rpc").unwrap();
        Pool::new(
            (1..=n)
                .map(|i| {
                    let address = Felt::from(i);
                    let account = SingleOwnerAccount::new(
                        JsonRpcClient::new(HttpTransport::new(url.clone())),
                        LocalWallet::from(SigningKey::from_secret_scalar(Felt::from(i))),
                        address,
                        Felt::ONE,
                        ExecutionEncoding::New,
                    );
                    (address, TxSender::new(account, SenderConfig::default()))
                })
                .collect(),
        )
    }

    #[test]
    fn an_account_someone_waits_for_is_left_to_them_while_another_is_free() {
        let pool = pool(2);
        let (a, b) = (Felt::from(1u8), Felt::from(2u8));
        let pin = Pin::new(&pool, a);
        let any = pool.take_free(None, &|_| false).unwrap();
        assert_eq!(pool.accounts[any].address, b, "the unpinned account first");
        let pinned = pool.take_free(Some(a), &|_| false).unwrap();
        assert_eq!(pool.accounts[pinned].address, a);
        assert_eq!(pool.take_free(None, &|_| false), None, "both leased");
        pool.free.lock().unwrap().push_back(pinned);
        assert_eq!(
            pool.take_free(Some(b), &|_| false),
            None,
            "only that account will do"
        );
        // With nothing else free, an any-account request still gets the pinned one.
        assert_eq!(pool.take_free(None, &|_| false), Some(pinned));
        drop(pin);
        assert!(pool.pinned.lock().unwrap().is_empty());
    }

    #[test]
    fn accounts_out_of_rotation_are_not_leased_nor_named_as_caller() {
        let pool = pool(2);
        assert!(pool.accounts[0].set_balance(0, 10), "out of rotation");
        assert_eq!(
            pool.take_free(None, &|_| false)
                .map(|i| pool.accounts[i].address),
            Some(Felt::from(2u8))
        );
        for user in 0u64..20 {
            assert_eq!(pool.caller_for(Felt::from(user)), Felt::from(2u8));
        }
        assert!(pool.accounts[0].set_balance(100, 10), "back in rotation");
        let callers: std::collections::HashSet<Felt> =
            (0u64..20).map(|u| pool.caller_for(Felt::from(u))).collect();
        assert_eq!(callers.len(), 2, "users spread over both");
    }

    #[test]
    fn accounts_to_avoid_are_passed_over_and_none_left_is_none() {
        let pool = pool(2);
        let (a, b) = (Felt::from(1u8), Felt::from(2u8));
        let taken = pool.take_free(None, &|address| address == a).unwrap();
        assert_eq!(pool.accounts[taken].address, b);
        pool.free.lock().unwrap().push_back(taken);
        assert_eq!(pool.take_free(None, &|_| true), None);
        assert_eq!(pool.take_free(Some(a), &|address| address == a), None);
    }
}
