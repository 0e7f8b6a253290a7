//! The model store: TorchScript files addressed by their SHA-256 (the `model_hash`
//! registered on-chain), each with its input spec, and a cache of loaded modules per device
//! bounded by count and by bytes.
//!
//! A module's memory is taken to be its file's size: a TorchScript file is its parameters and
//! buffers stored uncompressed plus a little code, which is what loading puts on the device.
//! The cache keeps the most recently used modules whose files total at most the byte bound,
//! and always the newest (a job needs it; the worker's largest accepted model file bounds
//! it). Concurrent loads of one model on one device wait for a single load from disk.
//!
//! On disk: `<dir>/<sha256>.pt` and `<dir>/<sha256>.spec.json`. Loading reads the file once,
//! checks its SHA-256 against the name it was asked for, and only then hands those same bytes
//! to libtorch, so what runs is exactly what was verified.

use std::fs;
use std::io::{Cursor, ErrorKind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tch::{CModule, Device};

use crate::digest::Digest;
use crate::error::EngineError;

/// What a model takes: one tensor `[batch, input_shape...]` of `input_dtype`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Shape of one row (the input without its leading batch dimension).
    pub input_shape: Vec<i64>,
    /// Element type, as safetensors names it (`F32`, `F16`, `BF16`, `I64`, ...).
    pub input_dtype: String,
    /// Most rows the model accepts in one forward pass.
    pub max_batch: i64,
}

/// A module loaded on a device, with its spec.
#[derive(Debug)]
pub struct LoadedModel {
    pub hash: Digest,
    pub spec: ModelSpec,
    pub device: Device,
    /// Shared by the entries of one load: a new spec is a new entry on the same module.
    pub module: Arc<CModule>,
    /// Its file's size in bytes, what the cache counts it for.
    pub bytes: u64,
}

/// A load in progress: the model, the device, and the lock its loaders take turns on.
type Gate = (Digest, Device, Arc<Mutex<()>>);

/// How long a load waits for passes still running on evicted modules to end, when their
/// memory and the new module's would exceed the byte bound (then it loads anyway, logged).
pub const DEFAULT_ROOM_WAIT: Duration = Duration::from_secs(120);

/// How long a model file just used is safe from the store's disk bound (by default).
pub const RECENTLY_USED: Duration = Duration::from_secs(600);

/// How often a load waiting for room looks again.
const ROOM_POLL: Duration = Duration::from_millis(20);

/// TorchScript models by hash, with a least-recently-used cache of loaded modules.
#[derive(Debug)]
pub struct ModelStore {
    dir: PathBuf,
    capacity: usize,
    /// Most bytes of model files the cache keeps loaded (the newest module is always kept).
    max_loaded_bytes: u64,
    /// Most recently used last.
    cache: Mutex<Vec<Arc<LoadedModel>>>,
    /// Modules let go of while a pass still held them: in memory until their passes end, so
    /// counted against the byte bound until then.
    in_passes: Mutex<Vec<Weak<LoadedModel>>>,
    /// How long a load waits for room held by running passes.
    room_wait: Duration,
    /// Most bytes of model files kept on disk (the least recently used go first).
    max_stored_bytes: u64,
    /// When each model's file was last marked used.
    touched: Mutex<std::collections::HashMap<Digest, Instant>>,
    /// How long a file just used is safe from the disk bound.
    recently_used: Duration,
    /// Loads in progress: a second load of the same model waits for the first.
    loads: Mutex<Vec<Gate>>,
    /// Modules read from disk and loaded so far.
    disk_loads: AtomicU64,
}

impl ModelStore {
    /// Opens (creating it if needed) a store in `dir` that keeps at most `capacity` loaded
    /// modules (per device and model) in memory.
    pub fn open(dir: impl Into<PathBuf>, capacity: usize) -> anyhow::Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir)
            .with_context(|| format!("creating model store {}", dir.display()))?;
        // Temporary files of writes a process did not finish (killed, or cut short at exit):
        // up to a model file's size each, and nothing else removes them. Another live
        // process's (its id is in the name: another command on the same store) is left alone;
        // one named with this process's id is a former process's (a container's pid 1 has
        // the same id at every start), since this one has written nothing yet.
        for entry in fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let Ok(entry) = entry else { continue };
            let path = entry.path();
            let writer = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.split_once(".tmp-"))
                .and_then(|(_, rest)| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok());
            let leftover = writer.is_some_and(|pid| {
                pid == std::process::id() || !Path::new("/proc").join(pid.to_string()).exists()
            });
            if leftover {
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "removing a leftover temporary file")
                    }
                }
            }
        }
        Ok(Self {
            dir,
            capacity: capacity.max(1),
            max_loaded_bytes: u64::MAX,
            cache: Mutex::new(Vec::new()),
            in_passes: Mutex::new(Vec::new()),
            room_wait: DEFAULT_ROOM_WAIT,
            max_stored_bytes: u64::MAX,
            touched: Mutex::new(std::collections::HashMap::new()),
            recently_used: RECENTLY_USED,
            loads: Mutex::new(Vec::new()),
            disk_loads: AtomicU64::new(0),
        })
    }

    /// Bounds the cache by the bytes of the model files it keeps loaded as well as by count
    /// (a few large models must not fill the device's memory): the least recently used
    /// modules are let go until the newest fits, which is always kept.
    pub fn with_max_loaded_bytes(mut self, bytes: u64) -> Self {
        self.max_loaded_bytes = bytes;
        self
    }

    /// Sets how long a model file just used is safe from the disk bound ([`RECENTLY_USED`]).
    pub fn with_recently_used(mut self, guard: Duration) -> Self {
        self.recently_used = guard;
        self
    }

    /// Sets how long a load waits for passes still running on evicted modules to end when
    /// their memory leaves no room for it ([`DEFAULT_ROOM_WAIT`]).
    pub fn with_room_wait(mut self, wait: Duration) -> Self {
        self.room_wait = wait;
        self
    }

    /// Bounds the model files kept on disk: after each insert, the least recently used
    /// (inserted or loaded) are removed until the files total at most `bytes`; the one just
    /// inserted is always kept. Every model a submitter registers is a file a job may fetch,
    /// so without a bound the store only grows.
    pub fn with_max_stored_bytes(mut self, bytes: u64) -> Self {
        self.max_stored_bytes = bytes;
        self
    }

    /// Removes the least recently used model files (and their specs) until the store's files
    /// total at most its bound, never `keep`, a model loaded or being loaded, or one used
    /// within `recently_used` ([`RECENTLY_USED`]; a job that found it there may be about to load it: the
    /// bound waits rather than take it from under the job).
    fn trim_disk(&self, keep: &Digest) {
        if self.max_stored_bytes == u64::MAX {
            return;
        }
        let in_use: Vec<Digest> = {
            let cached = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            let loads = self.loads.lock().unwrap_or_else(|p| p.into_inner());
            cached
                .iter()
                .map(|m| m.hash)
                .chain(loads.iter().map(|(hash, _, _)| *hash))
                .collect()
        };
        let recent = std::time::SystemTime::now()
            .checked_sub(self.recently_used)
            .unwrap_or(std::time::UNIX_EPOCH);
        let files = self.files_by_use();
        let mut total: u64 = files.iter().map(|(_, size, _)| size).sum();
        for (used_at, size, hash) in files {
            if total <= self.max_stored_bytes {
                break;
            }
            if hash == *keep || in_use.contains(&hash) || used_at > recent {
                continue;
            }
            let removed = fs::remove_file(self.model_path(&hash));
            let _ = fs::remove_file(self.spec_path(&hash));
            match removed {
                Ok(()) => {
                    total -= size;
                    tracing::info!(model = %hash, bytes = size, "model file removed from the store (its disk bound)");
                }
                Err(e) => {
                    tracing::warn!(model = %hash, error = %e, "removing a model file past the store's disk bound")
                }
            }
        }
    }

    /// Marks model `hash`'s file as just used (the disk bound removes the least recently
    /// used first; a heartbeat lists the most recently used), at most once a minute.
    fn touch(&self, hash: &Digest) {
        {
            let mut touched = self.touched.lock().unwrap_or_else(|p| p.into_inner());
            if touched
                .get(hash)
                .is_some_and(|at| at.elapsed() < Duration::from_secs(60))
            {
                return;
            }
            if touched.len() > 1_024 {
                touched.clear();
            }
            touched.insert(*hash, Instant::now());
        }
        let touched = fs::File::options()
            .write(true)
            .open(self.model_path(hash))
            .and_then(|file| file.set_modified(std::time::SystemTime::now()));
        if let Err(e) = touched {
            tracing::debug!(model = %hash, error = %e, "marking a model file used");
        }
    }

    fn model_path(&self, hash: &Digest) -> PathBuf {
        self.dir.join(format!("{hash}.pt"))
    }

    fn spec_path(&self, hash: &Digest) -> PathBuf {
        self.dir.join(format!("{hash}.spec.json"))
    }

    /// Adds a TorchScript file with its spec; returns its hash. Writes are atomic (temporary
    /// file, then rename), so a crash never leaves a half model under a valid name.
    pub fn insert(&self, torchscript: &[u8], spec: &ModelSpec) -> anyhow::Result<Digest> {
        let hash = Digest::of(torchscript);
        write_atomic(
            &self.spec_path(&hash),
            serde_json::to_vec_pretty(spec)?.as_slice(),
        )?;
        write_atomic(&self.model_path(&hash), torchscript)?;
        self.trim_disk(&hash);
        Ok(hash)
    }

    /// Replaces the spec of model `hash`, which the store must hold. Its loaded modules stay
    /// loaded, now under the new spec: a module does not depend on the spec (the engine checks
    /// inputs against it), so a job whose rows differ costs no reload, and the module a
    /// batching task holds is the same one, not a second copy. (A worker's spec is its own
    /// guess from a job's input, not the model owner's word: a job whose rows differ corrects
    /// it.)
    pub fn respec(&self, hash: &Digest, spec: &ModelSpec) -> anyhow::Result<()> {
        anyhow::ensure!(self.contains(hash), "model {hash} is not in the store");
        write_atomic(
            &self.spec_path(hash),
            serde_json::to_vec_pretty(spec)?.as_slice(),
        )?;
        if let Ok(mut cache) = self.cache.lock() {
            for entry in cache.iter_mut().filter(|m| m.hash == *hash) {
                *entry = Arc::new(LoadedModel {
                    hash: *hash,
                    spec: spec.clone(),
                    device: entry.device,
                    module: entry.module.clone(),
                    bytes: entry.bytes,
                });
            }
        }
        Ok(())
    }

    /// Whether the store holds model `hash` (its file and spec).
    pub fn contains(&self, hash: &Digest) -> bool {
        self.model_path(hash).is_file() && self.spec_path(hash).is_file()
    }

    /// Model `hash`'s file and spec, for a run in another process (the file is marked used);
    /// [`EngineError::UnknownModel`] when the store does not hold it.
    pub fn file_of(&self, hash: &Digest) -> Result<(PathBuf, ModelSpec), EngineError> {
        let spec = match fs::read(self.spec_path(hash)) {
            Ok(text) => serde_json::from_slice(&text).map_err(|e| {
                self.forget(hash);
                EngineError::from(
                    anyhow::Error::new(e).context(format!("reading the spec of model {hash}")),
                )
            })?,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(EngineError::UnknownModel(*hash))
            }
            Err(e) => {
                return Err(EngineError::from(
                    anyhow::Error::new(e).context("reading a model's spec"),
                ))
            }
        };
        let path = self.model_path(hash);
        if !path.is_file() {
            return Err(EngineError::UnknownModel(*hash));
        }
        self.touch(hash);
        Ok((path, spec))
    }

    /// Whether model `hash`'s file hashes to its name; a damaged one is forgotten, to be
    /// fetched again (what another process's claim of a mismatch is checked with).
    pub fn verify(&self, hash: &Digest) -> bool {
        match fs::read(self.model_path(hash)) {
            Ok(bytes) if Digest::of(&bytes) == *hash => true,
            Ok(_) => {
                self.forget(hash);
                false
            }
            Err(_) => false,
        }
    }

    /// The hashes of every model the store holds.
    pub fn hashes(&self) -> Vec<Digest> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut hashes: Vec<Digest> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".pt")?.parse().ok()
            })
            .filter(|hash| self.contains(hash))
            .collect();
        hashes.sort();
        hashes
    }

    /// At most `n` of the models the store holds, the most recently used (inserted or loaded)
    /// first.
    pub fn recent_hashes(&self, n: usize) -> Vec<Digest> {
        self.files_by_use()
            .into_iter()
            .rev()
            .take(n)
            .map(|(_, _, hash)| hash)
            .collect()
    }

    /// The model files the store holds as (last used, size, hash), the least recently used
    /// first (a file whose metadata cannot be read is left out).
    fn files_by_use(&self) -> Vec<(std::time::SystemTime, u64, Digest)> {
        let mut files: Vec<(std::time::SystemTime, u64, Digest)> = self
            .hashes()
            .into_iter()
            .filter_map(|hash| {
                let meta = fs::metadata(self.model_path(&hash)).ok()?;
                Some((meta.modified().ok()?, meta.len(), hash))
            })
            .collect();
        files.sort();
        files
    }

    /// Adds the TorchScript file at `path`.
    pub fn insert_file(&self, path: &Path, spec: &ModelSpec) -> anyhow::Result<Digest> {
        let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        self.insert(&bytes, spec)
    }

    /// The model `hash` loaded on `device`, from the cache or from disk (verified). Loads of
    /// one model on one device take turns: the later ones find the first's module cached
    /// rather than each loading a copy (a burst of a new model's first jobs would otherwise
    /// load it once per job).
    pub fn load(&self, hash: &Digest, device: Device) -> Result<Arc<LoadedModel>, EngineError> {
        if let Some(model) = self.cached(hash, device) {
            return Ok(model);
        }
        self.touch(hash);
        self.make_room_for(hash, device);
        let gate = {
            let mut loads = self.loads.lock().unwrap_or_else(|p| p.into_inner());
            match loads.iter().find(|(h, d, _)| h == hash && *d == device) {
                Some((_, _, gate)) => gate.clone(),
                None => {
                    let gate = Arc::new(Mutex::new(()));
                    loads.push((*hash, device, gate.clone()));
                    gate
                }
            }
        };
        let loaded = {
            let _turn = gate.lock().unwrap_or_else(|p| p.into_inner());
            match self.cached(hash, device) {
                Some(model) => Ok(model),
                None => self.load_from_disk(hash, device),
            }
        };
        // The last loader out forgets the gate (one still holding it finds the module cached,
        // or loads it if this load failed). Gates are cloned and dropped only under the lock,
        // so the count is exact.
        let mut loads = self.loads.lock().unwrap_or_else(|p| p.into_inner());
        if Arc::strong_count(&gate) == 2 {
            loads.retain(|(_, _, g)| !Arc::ptr_eq(g, &gate));
        }
        drop(gate);
        drop(loads);
        loaded
    }

    fn load_from_disk(
        &self,
        hash: &Digest,
        device: Device,
    ) -> Result<Arc<LoadedModel>, EngineError> {
        let bytes = match fs::read(self.model_path(hash)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(EngineError::UnknownModel(*hash))
            }
            Err(e) => {
                return Err(EngineError::from(
                    anyhow::Error::new(e).context("reading model"),
                ))
            }
        };
        let file_bytes = bytes.len() as u64;
        let actual = Digest::of(&bytes);
        if actual != *hash {
            // Damaged on disk (a write a power loss cut short, a tampered file): forgotten,
            // so that the model is fetched again rather than refused for every job.
            self.forget(hash);
            return Err(EngineError::HashMismatch {
                expected: *hash,
                actual,
            });
        }
        let spec: ModelSpec = fs::read(self.spec_path(hash))
            .map_err(anyhow::Error::new)
            .and_then(|text| serde_json::from_slice(&text).map_err(anyhow::Error::new))
            .map_err(|e| {
                self.forget(hash);
                EngineError::from(e.context(format!("reading the spec of model {hash}")))
            })?;
        // Room first: the cache lets go of what the new module would put over the bound
        // before it loads, not after (the peak would be the bound plus the new module). The
        // modules of passes still running were waited for before (`make_room_for`).
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|m| !(m.hash == *hash && m.device == device));
            self.evict_for(&mut cache, file_bytes);
        }
        // What it may call is checked before libtorch compiles its code.
        screen(hash, &bytes)?;
        let mut module =
            CModule::load_data_on_device(&mut Cursor::new(bytes), device).map_err(|e| {
                EngineError::CorruptModel {
                    hash: *hash,
                    reason: e.to_string(),
                }
            })?;
        module.set_eval();
        self.disk_loads.fetch_add(1, Ordering::Relaxed);
        let model = Arc::new(LoadedModel {
            hash: *hash,
            spec,
            device,
            module: Arc::new(module),
            bytes: file_bytes,
        });
        self.remember(model.clone());
        tracing::info!(model = %hash, ?device, "model loaded");
        Ok(model)
    }

    /// Removes model `hash`'s file and spec (damaged: see [`Self::load`]), so that the store no
    /// longer holds it and the next job fetches it again.
    fn forget(&self, hash: &Digest) {
        tracing::error!(model = %hash, "the stored model file or spec is damaged: removed, to be fetched again");
        for path in [self.model_path(hash), self.spec_path(hash)] {
            if let Err(e) = fs::remove_file(&path) {
                if e.kind() != ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e, "removing a damaged model file");
                }
            }
        }
    }

    /// The model if it is loaded on `device` (marks it recently used, in the cache and on
    /// disk); never reads the file.
    pub fn cached(&self, hash: &Digest, device: Device) -> Option<Arc<LoadedModel>> {
        let model = {
            let mut cache = self.cache.lock().ok()?;
            let at = cache
                .iter()
                .position(|m| m.hash == *hash && m.device == device)?;
            let model = cache.remove(at);
            cache.push(model.clone());
            model
        };
        self.touch(hash);
        Some(model)
    }

    /// Waits, at most `room_wait`, until the modules that running passes still hold leave
    /// room under the loaded-model bound for model `hash` (its file's size), unless it is
    /// loaded already or nothing is in passes. Done before the load is timed (the engine's
    /// watchdog counts a load's time, not this wait) and before the file is read (waiting
    /// loads would otherwise each hold a whole file in memory).
    pub fn make_room_for(&self, hash: &Digest, device: Device) {
        let loaded = self
            .cache
            .lock()
            .map(|c| c.iter().any(|m| m.hash == *hash && m.device == device))
            .unwrap_or(false);
        if loaded {
            return;
        }
        let Ok(bytes) = fs::metadata(self.model_path(hash)).map(|m| m.len()) else {
            return;
        };
        let since = Instant::now();
        loop {
            // What passes hold: modules the cache let go of, and cached ones a request holds
            // too (letting them go of would not free them).
            let held_in_cache: u64 = self
                .cache
                .lock()
                .map(|c| {
                    c.iter()
                        .filter(|m| Arc::strong_count(m) > 1)
                        .map(|m| m.bytes)
                        .sum()
                })
                .unwrap_or(0);
            let in_passes = self.in_pass_bytes().saturating_add(held_in_cache);
            // The idle cache can be let go of; what passes hold cannot, until they end.
            if in_passes == 0 || in_passes.saturating_add(bytes) <= self.max_loaded_bytes {
                return;
            }
            if since.elapsed() >= self.room_wait {
                tracing::warn!(
                    model = %hash,
                    bytes,
                    in_passes,
                    "no room under the loaded-model bound after waiting for running passes: loading anyway"
                );
                return;
            }
            std::thread::sleep(ROOM_POLL);
        }
    }

    fn remember(&self, model: Arc<LoadedModel>) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|m| !(m.hash == model.hash && m.device == model.device));
            self.evict_for(&mut cache, model.bytes);
            cache.push(model);
        }
    }

    /// Lets the least recently used modules go until one more of `bytes` fits the count and
    /// the byte bound, counting the modules of running passes (or none is left). A module a
    /// pass still holds is remembered until its passes end.
    fn evict_for(&self, cache: &mut Vec<Arc<LoadedModel>>, bytes: u64) {
        let mut held: u64 = cache
            .iter()
            .map(|m| m.bytes)
            .sum::<u64>()
            .saturating_add(self.in_pass_bytes());
        while !cache.is_empty()
            && (cache.len() >= self.capacity || held.saturating_add(bytes) > self.max_loaded_bytes)
        {
            let evicted = cache.remove(0);
            held -= evicted.bytes;
            tracing::info!(model = %evicted.hash, bytes = evicted.bytes, "model evicted from the cache");
            if Arc::strong_count(&evicted) > 1 {
                // Still in a pass: in memory until it ends, so still counted.
                held = held.saturating_add(evicted.bytes);
                self.in_passes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Arc::downgrade(&evicted));
            }
        }
    }

    /// The bytes of the modules let go of by the cache that running passes still hold.
    fn in_pass_bytes(&self) -> u64 {
        let mut in_passes = self.in_passes.lock().unwrap_or_else(|p| p.into_inner());
        in_passes.retain(|m| m.strong_count() > 0);
        in_passes
            .iter()
            .filter_map(Weak::upgrade)
            .map(|m| m.bytes)
            .sum()
    }

    /// How many modules are loaded.
    pub fn loaded(&self) -> usize {
        self.cache.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// The bytes of the model files whose modules are in memory: those the cache holds, and
    /// those it let go of that running passes still hold.
    pub fn loaded_bytes(&self) -> u64 {
        self.cache
            .lock()
            .map(|c| c.iter().map(|m| m.bytes).sum::<u64>())
            .unwrap_or(0)
            .saturating_add(self.in_pass_bytes())
    }

    /// How many modules were read from disk and loaded since the store was opened.
    pub fn disk_loads(&self) -> u64 {
        self.disk_loads.load(Ordering::Relaxed)
    }
}

/// Writes `bytes` to a temporary file of its own, synced, then renames it to `path` and syncs
/// the directory, so that after a power loss the file is either absent or whole (an empty or
/// cut file under the final name would be held, and refused, for every job). Each write has
/// its own temporary name (process and sequence number), so two writes of the same model at
/// once (two jobs of a model not yet stored) never share one: the rename is atomic and the last
/// one puts the same bytes in place.
fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = path.with_file_name(name);
    let written = (|| {
        let mut file =
            fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        std::io::Write::write_all(&mut file, bytes)
            .with_context(|| format!("writing {}", tmp.display()))?;
        file.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
        fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
        if let Some(dir) = path.parent() {
            fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("syncing {}", dir.display()))?;
        }
        Ok(())
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// What a model file may call, checked before libtorch compiles its code ([`crate::screen`]).
pub(crate) fn screen(hash: &Digest, bytes: &[u8]) -> Result<(), EngineError> {
    crate::screen::check(bytes).map_err(|screened| match screened {
        crate::screen::Screened::Unreadable(reason) => EngineError::CorruptModel {
            hash: *hash,
            reason,
        },
        crate::screen::Screened::Refused(reason) => {
            tracing::warn!(model = %hash, %reason, "a model refused");
            EngineError::UnsafeModel {
                hash: *hash,
                reason,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_removes_a_dead_writers_temporary_files_and_keeps_a_live_ones() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join("aa.pt.tmp-4194304999-0");
        let live = dir.path().join(format!(
            "bb.pt.tmp-{}-7",
            std::os::unix::process::parent_id()
        ));
        let own = dir
            .path()
            .join(format!("dd.pt.tmp-{}-0", std::process::id()));
        let model = dir.path().join("cc.pt");
        for path in [&dead, &live, &own, &model] {
            fs::write(path, b"bytes").unwrap();
        }
        ModelStore::open(dir.path(), 1).unwrap();
        assert!(!dead.exists(), "a dead process's temporary file is removed");
        assert!(!own.exists(), "a former process with this id left it");
        assert!(live.exists(), "a live process's write in progress is kept");
        assert!(model.exists());
    }
}
