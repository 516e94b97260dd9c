//! argon2id password hashing. Hashing is deliberately slow (tens of milliseconds and
//! megabytes of memory per hash), so it runs on a few threads of its own: never on an async
//! worker thread that serves other requests, and never on an unbounded pool, where a login
//! burst would run hundreds of hashes at once (each allocating its 19 MiB, which the
//! allocator then keeps per thread). At most one hash per thread runs; a bounded queue
//! holds the next ones, and when it is full the caller is told [`HashError::Busy`] at once
//! (the HTTP layer answers 503 with `Retry-After`). Each thread keeps one argon2 memory
//! block array and reuses it for every hash, so the memory is `threads × memory_kib`, set
//! at the first hash and never more (a fresh allocation per hash is what glibc keeps).

use std::cell::RefCell;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};

use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use async_trait::async_trait;
use ports::{HashError, PasswordHasher};

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory per hash in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for Argon2Params {
    /// The OWASP recommendation for argon2id: 19 MiB, 2 iterations, 1 lane.
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// How much hashing may run and wait at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashLimits {
    /// Hashes (and verifications) running at once, one per thread. Their memory is
    /// `threads × memory_kib` at most.
    pub threads: usize,
    /// Hashes waiting for a thread; one more is refused with [`HashError::Busy`].
    pub queue: usize,
}

impl HashLimits {
    /// `threads` threads, and 16 hashes waiting per thread (at 19 MiB and 2 passes, about
    /// half a second of work each).
    pub fn for_threads(threads: usize) -> Self {
        Self {
            threads,
            queue: 16 * threads,
        }
    }
}

impl Default for HashLimits {
    /// One thread per core ([`HashLimits::for_threads`]).
    fn default() -> Self {
        Self::for_threads(std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get))
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The hashing threads and their queue. The threads end when the last sender (the last
/// clone of the hasher) is dropped.
#[derive(Debug)]
struct HashThreads {
    jobs: SyncSender<Job>,
}

impl HashThreads {
    fn start(limits: HashLimits) -> Result<Self, HashError> {
        let (jobs, queue) = sync_channel::<Job>(limits.queue);
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..limits.threads.max(1) {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || work(&queue))
                .map_err(|e| HashError::Failed(format!("cannot start a hashing thread: {e}")))?;
        }
        Ok(Self { jobs })
    }

    /// Runs `f` on a hashing thread, or refuses at once when the queue is full.
    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, HashError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // A panic is caught here so that the thread lives on; the caller then sees the
            // dropped sender as a failure.
            if let Ok(value) = std::panic::catch_unwind(AssertUnwindSafe(f)) {
                let _ = done.send(value);
            }
        });
        self.jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => HashError::Busy,
            TrySendError::Disconnected(_) => HashError::Failed("the hashing threads have stopped".to_owned()),
        })?;
        result
            .await
            .map_err(|_| HashError::Failed("the hashing task failed".to_owned()))
    }
}

/// A hashing thread: takes the next job until the queue is closed.
fn work(queue: &Mutex<Receiver<Job>>) {
    loop {
        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

/// [`ports::PasswordHasher`] producing argon2id PHC strings. Verification uses the
/// parameters recorded in each hash, so raising the cost later keeps old hashes valid.
/// Clones share the hashing threads.
#[derive(Debug, Clone)]
pub struct Argon2Hasher {
    params: Params,
    threads: Arc<HashThreads>,
}

impl Argon2Hasher {
    /// A hasher with these costs and the default [`HashLimits`].
    ///
    /// # Errors
    /// [`HashError::Failed`] when argon2 refuses the parameters (e.g. less than
    /// `8 * parallelism` KiB of memory, or zero iterations).
    pub fn new(params: Argon2Params) -> Result<Self, HashError> {
        Self::with_limits(params, HashLimits::default())
    }

    /// A hasher with these costs and limits.
    ///
    /// # Errors
    /// As [`Argon2Hasher::new`], and when a thread cannot be started.
    pub fn with_limits(params: Argon2Params, limits: HashLimits) -> Result<Self, HashError> {
        let params = Params::new(params.memory_kib, params.iterations, params.parallelism, None)
            .map_err(|e| HashError::Failed(format!("invalid argon2 parameters: {e}")))?;
        Ok(Self {
            params,
            threads: Arc::new(HashThreads::start(limits)?),
        })
    }

    fn argon2(params: Params) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }
}

thread_local! {
    /// This hashing thread's argon2 memory, grown to the largest cost seen and reused.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// `argon2`'s output for `password` and `salt`, `out_len` bytes, computed in this thread's
/// reused memory (wiped after use: it holds values derived from the password).
fn compute(argon2: &Argon2<'_>, password: &[u8], salt: &[u8], out_len: usize) -> Result<Output, HashError> {
    let failed = |e: &dyn std::fmt::Display| HashError::Failed(e.to_string());
    let blocks = argon2.params().block_count();
    let mut buffer = [0u8; Output::MAX_LENGTH];
    let out = buffer
        .get_mut(..out_len)
        .ok_or_else(|| HashError::Failed(format!("an output of {out_len} bytes is too long")))?;
    MEMORY.with_borrow_mut(|memory| {
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        let result = argon2.hash_password_into_with_memory(password, salt, &mut *out, &mut memory[..blocks]);
        memory[..blocks].fill(Block::default());
        result.map_err(|e| failed(&e))
    })?;
    Output::new(out).map_err(|e| failed(&e))
}

/// A new PHC string for `password` under `params`.
fn hash_phc(params: &Params, password: &[u8]) -> Result<String, HashError> {
    let failed = |e: &dyn std::fmt::Display| HashError::Failed(e.to_string());
    let salt = argon2::password_hash::try_generate_salt().map_err(|e| failed(&e))?;
    let argon2 = Argon2Hasher::argon2(params.clone());
    let output = compute(
        &argon2,
        password,
        &salt,
        params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN),
    )?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| failed(&e))?,
        salt: Some(Salt::new(&salt).map_err(|e| failed(&e))?),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `hash`, computed with the parameters the hash
/// records. An unsupported algorithm, bad parameters or a missing salt is "does not match"
/// (logged).
fn verify_phc(password: &[u8], hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let setup = (|| {
        let algorithm = Algorithm::try_from(parsed.algorithm.as_str())?;
        let version = parsed.version.map(Version::try_from).transpose()?.unwrap_or_default();
        let params = Params::try_from(&parsed)?;
        Ok::<_, argon2::password_hash::Error>(Argon2::new(algorithm, version, params))
    })();
    let (argon2, Some(salt), Some(expected)) = (setup, &parsed.salt, &parsed.hash) else {
        tracing::warn!("stored password hash has no salt or output");
        return false;
    };
    let argon2 = match argon2 {
        Ok(argon2) => argon2,
        Err(e) => {
            tracing::warn!(error = %e, "stored password hash cannot be verified");
            return false;
        }
    };
    match compute(&argon2, password, salt, expected.len()) {
        // `Output`'s equality is constant-time.
        Ok(computed) => computed == *expected,
        Err(e) => {
            tracing::warn!(error = %e, "stored password hash cannot be verified");
            false
        }
    }
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &str) -> Result<String, HashError> {
        let params = self.params.clone();
        let password = password.to_owned();
        self.threads.run(move || hash_phc(&params, password.as_bytes())).await?
    }

    async fn verify(&self, password: &str, hash: &str) -> Result<bool, HashError> {
        if PasswordHash::new(hash).is_err() {
            if !hash.is_empty() {
                tracing::warn!("stored password hash is not a PHC string");
            }
            return Ok(false);
        }
        let (password, hash) = (password.to_owned(), hash.to_owned());
        self.threads.run(move || verify_phc(password.as_bytes(), &hash)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Argon2Hasher {
        Argon2Hasher::new(Argon2Params {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_and_no_other() {
        let hasher = cheap();
        let hash = hasher.hash("correct horse battery").await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{hash}");
        assert_eq!(hasher.verify("correct horse battery", &hash).await, Ok(true));
        assert_eq!(hasher.verify("wrong horse battery", &hash).await, Ok(false));
    }

    #[tokio::test]
    async fn two_hashes_of_one_password_differ_by_salt() {
        let hasher = cheap();
        let a = hasher.hash("correct horse battery").await.unwrap();
        let b = hasher.hash("correct horse battery").await.unwrap();
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn hashes_made_with_other_costs_still_verify() {
        let hash = cheap().hash("correct horse battery").await.unwrap();
        let other = Argon2Hasher::new(Argon2Params {
            memory_kib: 2048,
            iterations: 2,
            parallelism: 1,
        })
        .unwrap();
        assert_eq!(other.verify("correct horse battery", &hash).await, Ok(true));
    }

    #[tokio::test]
    async fn a_malformed_or_empty_hash_does_not_match() {
        let hasher = cheap();
        assert_eq!(hasher.verify("pw", "").await, Ok(false));
        assert_eq!(hasher.verify("pw", "not a hash").await, Ok(false));
        assert_eq!(hasher.verify("pw", "$argon2id$v=19$m=1024,t=1,p=1$").await, Ok(false));
        assert_eq!(hasher.verify("pw", "$bcrypt$whatever").await, Ok(false));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_refuses_at_once_and_every_accepted_hash_completes() {
        // One thread, two waiting. The thread is held by a job that waits for a gate; of 12
        // hashes asked then, exactly the 2 that fit in the queue are taken, the other 10
        // refused without waiting, and the 2 complete once the gate opens.
        let hasher = Argon2Hasher::with_limits(
            Argon2Params {
                memory_kib: 1024,
                iterations: 1,
                parallelism: 1,
            },
            HashLimits { threads: 1, queue: 2 },
        )
        .unwrap();
        let (started, running) = tokio::sync::oneshot::channel();
        let (open, gate) = std::sync::mpsc::channel::<()>();
        let holder = {
            let threads = Arc::clone(&hasher.threads);
            tokio::spawn(async move {
                threads
                    .run(move || {
                        started.send(()).unwrap();
                        gate.recv().unwrap();
                    })
                    .await
            })
        };
        running.await.unwrap();

        let asked = futures::future::join_all((0..12).map(|_| {
            let hasher = hasher.clone();
            tokio::spawn(async move { hasher.hash("correct horse battery").await })
        }));
        let opener = async {
            // Every `hash` has been sent or refused once the runtime is idle a moment.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            open.send(()).unwrap();
        };
        let (results, ()) = tokio::join!(asked, opener);
        holder.await.unwrap().unwrap();
        let results: Vec<_> = results.into_iter().map(Result::unwrap).collect();
        let busy = results.iter().filter(|r| matches!(r, Err(HashError::Busy))).count();
        let done: Vec<&String> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!((done.len(), busy), (2, 10), "{results:?}");
        for hash in done {
            assert_eq!(hasher.verify("correct horse battery", hash).await, Ok(true));
        }
    }

    #[tokio::test]
    async fn hashes_interoperate_with_the_argon2_crates_own_hasher_and_verifier() {
        use argon2::{PasswordHasher as _, PasswordVerifier as _};
        let params = Params::new(1024, 1, 1, None).unwrap();
        let theirs = Argon2Hasher::argon2(params.clone())
            .hash_password(b"correct horse battery")
            .unwrap()
            .to_string();
        let hasher = cheap();
        assert_eq!(hasher.verify("correct horse battery", &theirs).await, Ok(true));
        assert_eq!(hasher.verify("wrong horse battery", &theirs).await, Ok(false));
        let ours = hasher.hash("correct horse battery").await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2Hasher::argon2(params)
                .verify_password(b"correct horse battery", &parsed)
                .is_ok()
        );
    }

    #[tokio::test]
    async fn parameters_argon2_refuses_are_an_error() {
        let invalid = Argon2Hasher::new(Argon2Params {
            memory_kib: 1024,
            iterations: 0,
            parallelism: 1,
        });
        assert!(matches!(invalid, Err(HashError::Failed(_))));
    }
}
