//! A fixed-size pool of logged-in R/W sessions.
//!
//! A `cryptoki::session::Session` is `Send` but not `Sync` (PKCS#11 forbids concurrent calls
//! on one session), so every operation checks out a whole session, uses it, and the
//! [`SessionGuard`] puts it back on every path, including `?` early returns and panics.
//!
//! Two kinds of trouble are repaired here rather than surfaced to callers forever:
//!
//! * The process got logged out (login state is per process, so one `C_Logout` anywhere, or
//!   a token reset, affects every session) and private-object handles went stale. A call
//!   failing with a code that can mean this triggers a re-login if needed, a fresh
//!   [`keys::locate`], and one retry.
//! * The session itself is dead (closed, token removed, operation stuck). It is not returned
//!   to the pool; its slot is counted in `missing` and the next checkout that finds no idle
//!   session opens a replacement, so the pool neither shrinks for good nor wedges.
//!
//! A lost session rarely comes alone: a token reset, a removed and reinserted token, or a
//! `C_CloseAllSessions` kills every session of the process at once, including the idle ones.
//! So a session-fatal error also raises the pool's *fault epoch*; an idle session from an
//! earlier epoch is checked (`C_GetSessionInfo`, re-login if the token logged us out) before
//! it is handed out, and dropped if dead. And [`Pool::run`] runs an operation a second time on
//! another session when the first one was lost under it, so the request in flight usually does
//! not fail either. When reopening fails because the token is gone (not present, slot
//! invalid), the slot is looked up again by the token selector: a token that comes back,
//! even in another slot, is used again without restarting the process.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CryptokiError, RvError};
use cryptoki::mechanism::MechanismType;
use cryptoki::object::ObjectHandle;
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use crate::cache::{LruCache, DEFAULT_CAPACITY};
use crate::error::{rv_of, Error};
use crate::keys::{self, TokenKeys};
use crate::nested::AttributeReader;
use crate::select::{find_slot, TokenSelector};

/// One pooled session, the token-key handles valid in it, and the unwrapped data keys that
/// live in it.
pub(crate) struct PooledSession {
    session: Session,
    keys: TokenKeys,
    cache: LruCache<ObjectHandle>,
    /// Unused bytes from the token's RNG, handed out as GCM nonces. One C_GenerateRandom
    /// serves NONCE_BATCH encryptions instead of one: measured, the per-call round trip into
    /// SoftHSM2 cost about a tenth of an Encrypt. Nonces need uniqueness, not secrecy, so
    /// holding them in host memory for a while is fine.
    nonces: Vec<u8>,
    /// The pool's fault epoch when this session was opened or last checked.
    epoch: u64,
}

/// Nonces fetched per C_GenerateRandom.
const NONCE_BATCH: usize = 256;

/// What is needed to open (and re-open) logged-in sessions.
pub(crate) struct SessionFactory {
    pub(crate) pkcs11: Pkcs11,
    /// Where the token was last found. Replaced when the token went away and came back.
    pub(crate) slot: Mutex<Slot>,
    /// How to find the token again.
    pub(crate) selector: TokenSelector,
    /// Kept for re-login. `AuthPin` is a `secrecy::SecretString`: zeroized on drop, never
    /// printed.
    pub(crate) pin: AuthPin,
    /// Reads the root key's nested unwrap template whenever the keys are located.
    pub(crate) reader: AttributeReader,
}

impl SessionFactory {
    pub(crate) fn slot(&self) -> Slot {
        // Only held to copy a `Slot` in or out; never poisoned in a way that matters.
        *self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Open an R/W session and make sure the process is logged in.
    pub(crate) fn open_session(&self) -> Result<Session, Error> {
        let session = match self.pkcs11.open_rw_session(self.slot()) {
            Ok(s) => s,
            Err(e) if rv_of(&e).is_some_and(token_gone) => {
                // The token left this slot. If it is back somewhere (same slot after a
                // reinsertion, or another one), use it there; otherwise report the original
                // error, which says what happened.
                let Ok((slot, _)) = find_slot(&self.pkcs11, &self.selector) else {
                    return Err(Error::pkcs11("C_OpenSession")(e));
                };
                *self.slot.lock().unwrap_or_else(PoisonError::into_inner) = slot;
                self.pkcs11
                    .open_rw_session(slot)
                    .map_err(Error::pkcs11("C_OpenSession"))?
            }
            Err(e) => return Err(Error::pkcs11("C_OpenSession")(e)),
        };
        login(&session, &self.pin).map_err(Error::pkcs11("C_Login"))?;
        Ok(session)
    }

    /// Turn a logged-in session into a pool member.
    pub(crate) fn adopt(&self, session: Session) -> Result<PooledSession, Error> {
        let keys = keys::locate(&session, &self.reader)?;
        Ok(PooledSession {
            session,
            keys,
            cache: LruCache::new(DEFAULT_CAPACITY),
            nonces: Vec::new(),
            epoch: 0,
        })
    }

    pub(crate) fn open(&self) -> Result<PooledSession, Error> {
        self.adopt(self.open_session()?)
    }
}

/// Return values of C_OpenSession meaning the token is no longer in that slot.
fn token_gone(rv: RvError) -> bool {
    matches!(
        rv,
        RvError::TokenNotPresent
            | RvError::SlotIdInvalid
            | RvError::DeviceRemoved
            | RvError::TokenNotRecognized
    )
}

/// Whether an idle session from before a fault still works, logging in again if the token
/// logged the process out. `false`: drop it.
fn still_usable(session: &Session, pin: &AuthPin) -> bool {
    match session.get_session_info().map(|i| i.session_state()) {
        Ok(SessionState::RwUser) => true,
        Ok(SessionState::RwPublic) => login(session, pin).is_ok(),
        // Read-only or SO sessions are never ours; an error means the session is gone.
        _ => false,
    }
}

/// PKCS#11 login state is per application, not per session: once any session has logged in,
/// C_Login returns CKR_USER_ALREADY_LOGGED_IN, which means "done".
fn login(session: &Session, pin: &AuthPin) -> Result<(), CryptokiError> {
    match session.login(UserType::User, Some(pin)) {
        Err(e) if rv_of(&e) == Some(RvError::UserAlreadyLoggedIn) => Ok(()),
        other => other,
    }
}

struct PoolState {
    idle: Vec<PooledSession>,
    /// Sessions that were dropped as dead and not yet replaced.
    missing: usize,
    /// Raised whenever a session is found lost; idle sessions from earlier epochs are checked
    /// before use.
    fault_epoch: u64,
}

pub(crate) struct Pool {
    state: Mutex<PoolState>,
    returned: Condvar,
    factory: SessionFactory,
    size: usize,
}

impl Pool {
    pub(crate) fn new(factory: SessionFactory, sessions: Vec<PooledSession>) -> Self {
        Pool {
            size: sessions.len(),
            state: Mutex::new(PoolState {
                idle: sessions,
                missing: 0,
                fault_epoch: 0,
            }),
            returned: Condvar::new(),
            factory,
        }
    }

    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// Sessions checked out now (for the daemon's metrics): neither idle nor awaiting a
    /// replacement after dying.
    pub(crate) fn in_use(&self) -> usize {
        let state = self.lock();
        self.size.saturating_sub(state.idle.len() + state.missing)
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // The lock is never held across a PKCS#11 call or anything that can panic, so the
        // state behind a poisoned mutex is still consistent; keep serving.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Block until a session is free and take it.
    pub(crate) fn checkout(&self) -> Result<SessionGuard<'_>, Error> {
        let mut state = self.lock();
        loop {
            let epoch = state.fault_epoch;
            if let Some(mut s) = state.idle.pop() {
                if s.epoch == epoch {
                    return Ok(SessionGuard::new(self, s));
                }
                // Idle across a fault: check it without holding the lock (a token call).
                drop(state);
                if still_usable(&s.session, &self.factory.pin) {
                    s.epoch = epoch;
                    return Ok(SessionGuard::new(self, s));
                }
                // Dead: closing it may fail (it is gone already); cryptoki only logs that.
                drop(s);
                state = self.lock();
                state.missing += 1;
                continue;
            }
            if state.missing > 0 {
                state.missing -= 1;
                drop(state);
                // Open the replacement without holding the lock: it is a slow token call.
                return match self.factory.open() {
                    Ok(mut s) => {
                        s.epoch = epoch;
                        Ok(SessionGuard::new(self, s))
                    }
                    Err(e) => {
                        self.lock().missing += 1;
                        // Let another waiter try (and probably fail fast) instead of sleeping.
                        self.returned.notify_one();
                        Err(e)
                    }
                };
            }
            state = self
                .returned
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Check out a session and run `op` on it; if the session was lost under `op` (closed,
    /// token removed or reset), run `op` once more on another session.
    ///
    /// Every operation of this crate is restartable from scratch: it only reads token
    /// objects and creates session objects, and those died with the lost session. So the
    /// retry can neither duplicate an effect nor see a half-done one. One retry, not a loop:
    /// if the second session is lost too, the token is really gone and the caller is told.
    pub(crate) fn run<T>(
        &self,
        mut op: impl FnMut(&mut SessionGuard<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut s = self.checkout()?;
        let result = op(&mut s);
        if result.is_ok() || !s.lost {
            return result;
        }
        drop(s);
        let mut s = self.checkout()?;
        op(&mut s)
    }
}

/// Return values after which a session cannot be trusted to work again.
fn is_session_fatal(rv: RvError) -> bool {
    matches!(
        rv,
        RvError::SessionHandleInvalid
            | RvError::SessionClosed
            | RvError::DeviceRemoved
            | RvError::DeviceError
            | RvError::TokenNotPresent
            | RvError::UserNotLoggedIn
            | RvError::OperationActive
            | RvError::CryptokiNotInitialized
    )
}

/// Return values a token gives when we are logged out or hold a stale private-object handle.
fn may_mean_stale_login(rv: RvError) -> bool {
    matches!(
        rv,
        RvError::UserNotLoggedIn
            | RvError::KeyHandleInvalid
            | RvError::ObjectHandleInvalid
            | RvError::UnwrappingKeyHandleInvalid
            | RvError::WrappingKeyHandleInvalid
    )
}

/// A checked-out session. Returns it to the pool on drop.
pub(crate) struct SessionGuard<'a> {
    pool: &'a Pool,
    // Only `None` inside `drop`.
    session: Option<PooledSession>,
    dead: bool,
    /// The token said the session is gone (a session-fatal return value), as opposed to us
    /// retiring it on purpose.
    lost: bool,
}

impl<'a> SessionGuard<'a> {
    fn new(pool: &'a Pool, session: PooledSession) -> Self {
        SessionGuard {
            pool,
            session: Some(session),
            dead: false,
            lost: false,
        }
    }

    fn inner(&mut self) -> &mut PooledSession {
        // Invariant: `session` is Some from construction until drop.
        match self.session.as_mut() {
            Some(s) => s,
            None => unreachable!("SessionGuard used after drop"),
        }
    }

    /// Close this session instead of returning it to the pool; its session objects die with
    /// it. A replacement is opened on demand by a later checkout.
    pub(crate) fn retire(&mut self) {
        self.dead = true;
    }

    /// Whether the token lists `mech` in C_GetMechanismList (false if the list cannot be read).
    pub(crate) fn mechanism_listed(&self, mech: MechanismType) -> bool {
        let f = &self.pool.factory;
        f.pkcs11
            .get_mechanism_list(f.slot())
            .is_ok_and(|list| list.contains(&mech))
    }

    /// This session's cache of unwrapped data keys.
    pub(crate) fn cache(&mut self) -> &mut LruCache<ObjectHandle> {
        &mut self.inner().cache
    }

    /// A fresh `N`-byte nonce from the token's RNG, drawn from this session's batch.
    pub(crate) fn nonce<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        if self.inner().nonces.len() < N {
            let mut batch = vec![0u8; N * NONCE_BATCH];
            self.call("C_GenerateRandom", |s, _| {
                s.generate_random_slice(&mut batch)
            })?;
            self.inner().nonces = batch;
        }
        let pool = &mut self.inner().nonces;
        let mut out = [0u8; N];
        out.copy_from_slice(&pool[pool.len() - N..]);
        pool.truncate(pool.len() - N);
        Ok(out)
    }

    /// Run one cryptoki call on this session. `function` names the PKCS#11 function(s) for the
    /// error; `f` receives the session and the current token-key handles.
    ///
    /// `f` may run twice: if it fails with a code that can mean "logged out / stale handle",
    /// we log in again if the session says we are logged out, re-locate the token keys, and
    /// retry once. `f` must therefore be a complete, restartable operation (every cryptoki
    /// call we make is: C_*Init starts over, failed calls leave no operation active).
    pub(crate) fn call<T>(
        &mut self,
        function: &'static str,
        mut f: impl FnMut(&Session, TokenKeys) -> Result<T, CryptokiError>,
    ) -> Result<T, Error> {
        let pool = self.pool;
        let ps = self.inner();
        let mut result = f(&ps.session, ps.keys);
        if let Err(e) = &result {
            if rv_of(e).is_some_and(may_mean_stale_login) {
                if let Some(keys) = refresh(&ps.session, &pool.factory)? {
                    ps.keys = keys;
                    result = f(&ps.session, ps.keys);
                }
            }
        }
        // CKR_DEVICE_ERROR is ambiguous: kryoptic answers it for every OpenSSL failure, an RSA
        // ciphertext that does not decrypt included, and its session is fine. So it counts as
        // lost only if the session no longer answers C_GetSessionInfo either.
        let lost = result.as_ref().err().and_then(rv_of).is_some_and(|rv| {
            is_session_fatal(rv)
                && !(rv == RvError::DeviceError && ps.session.get_session_info().is_ok())
        });
        result.map_err(|e| {
            if lost {
                self.dead = true;
                self.lost = true;
                // Whatever killed this session probably killed its idle siblings too.
                pool.lock().fault_epoch += 1;
            }
            Error::pkcs11(function)(e)
        })
    }
}

/// Re-login if the session reports a public (logged-out) state, then locate the token keys
/// again. `Ok(None)`: nothing better to offer, report the original error. `Err`: the keys
/// found are not acceptable (e.g. substituted), which trumps the original error.
fn refresh(session: &Session, factory: &SessionFactory) -> Result<Option<TokenKeys>, Error> {
    let logged_out = matches!(
        session.get_session_info().map(|i| i.session_state()),
        Ok(SessionState::RoPublic | SessionState::RwPublic)
    );
    if logged_out && login(session, &factory.pin).is_err() {
        return Ok(None);
    }
    match keys::locate(session, &factory.reader) {
        Ok(keys) => Ok(Some(keys)),
        Err(e @ (Error::KeyPolicy { .. } | Error::KeyMissing { .. })) => Err(e),
        Err(_) => Ok(None),
    }
}

impl Drop for SessionGuard<'_> {
    fn drop(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        // A panic mid-operation may leave a PKCS#11 operation active on the session; do not
        // hand such a session to the next caller.
        if self.dead || std::thread::panicking() {
            // Dropping closes the session (cryptoki logs any error; the session is gone
            // either way). Its session objects die with it, so the key cache goes too.
            drop(session);
            self.pool.lock().missing += 1;
        } else {
            self.pool.lock().idle.push(session);
        }
        self.pool.returned.notify_one();
    }
}
