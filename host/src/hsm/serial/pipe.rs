//! The serial link's pipeline: several requests in flight on one line, each answer handed to
//! the caller whose sequence number it echoes.
//!
//! * **Sending** happens under one lock ([`Pipe::lock`]). Whoever holds it takes the next
//!   sequence number, registers a slot for the answer and queues `0x00` + frame; then, with
//!   the lock released, [`Pipe::flush`] writes the queue. One caller at a time writes, and it
//!   writes everything queued so far in one go, its own frame and those queued by others
//!   meanwhile: under load a single write (one wake-up of the device, one pass through the
//!   pseudo-terminal's buffer work) carries several requests. Frames never interleave on the
//!   line, and whatever callers numbered while holding the lock (envelope counters) reaches
//!   the device in that order.
//! * **Receiving** is one reader thread per link. It decodes every answer frame and passes
//!   it to the slot of its sequence number; frames that are no answer to a waiting request
//!   (garbage, corrupted frames, the device's seq-0 answers, late answers to requests that
//!   timed out) are dropped, so an answer is never given to a request it does not echo.
//!   Before the waiter gets its answer, the reader shows it to the [`Observer`], in the order
//!   the answers came off the line, which is the order the device produced them in: state
//!   the device changes as it answers (its pairing session) is followed in that order, not in
//!   whatever order the waiting threads happen to wake up.
//! * **The window** bounds the requests in flight ([`Pipe::new`]'s `window`): a sender waits,
//!   holding the send lock, until an answer or a timeout frees a slot. The device reads and
//!   answers frames one at a time from its receive buffer, which is finite on a board.
//! * **Timeouts** are per request, counted from its write: a request that times out gives up
//!   its slot, and its answer, should it come, is dropped. A read error fails every request in
//!   flight at once (they cannot hear their answers) instead of letting each run into its
//!   timeout.

use crate::config::SERIAL_MAX_IN_FLIGHT as MAX_WINDOW;
use crate::error::{Error, Result};
use keyward_shared::frame::{decode_frame, Envelope, Feed, FrameReader, MAX_FRAME};
use keyward_shared::wire::OwnedResponse as Response;
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Sees every answer that reaches a waiting request, on the reader thread, in the order the
/// answers came off the line, before the waiter does.
pub trait Observer: Send + Sync + 'static {
    /// What the observer tells the waiter about the answer.
    type Mark: Send + 'static;
    /// `tag` is what the request was sent with ([`Pipe::send`]).
    fn observe(&self, tag: u64, body: &Response) -> Self::Mark;
}

/// An answer, with the observer's mark.
pub struct Answer<M> {
    pub body: Response,
    pub mark: M,
}

/// The send lock's state: the last sequence number.
pub struct Tx {
    seq: u32,
}

/// Frames queued for the line, in the order they were numbered.
#[derive(Default)]
struct Queue {
    bytes: Vec<u8>,
    seqs: Vec<u32>,
    /// Whether a caller is writing (and will write what is queued before it stops).
    writing: bool,
}

type Waiter<M> = Sender<Result<Answer<M>>>;
/// The requests waiting for answers: sequence number → (observer tag, where the answer goes).
type Slots<M> = HashMap<u32, (u64, Waiter<M>)>;

/// What the reader and the waiters share.
struct Rx<O: Observer> {
    slots: Mutex<Slots<O::Mark>>,
    /// Signalled whenever a slot is freed.
    space: Condvar,
    stop: AtomicBool,
    observer: O,
}

/// A request on the line: where its answer will come.
pub struct Ticket<O: Observer> {
    pub seq: u32,
    answer: Receiver<Result<Answer<O::Mark>>>,
    rx: Arc<Rx<O>>,
}

impl<O: Observer> Drop for Ticket<O> {
    fn drop(&mut self) {
        // However the caller leaves (answer, timeout, error, panic), the slot is freed.
        self.rx.release(self.seq);
    }
}

pub struct Pipe<O: Observer> {
    tx: Mutex<Tx>,
    queue: Mutex<Queue>,
    /// Locked only by the one caller that writes (`Queue::writing`).
    line: Mutex<Box<dyn Write + Send>>,
    rx: Arc<Rx<O>>,
    reader: Option<JoinHandle<()>>,
    timeout: Duration,
    window: usize,
}

impl<O: Observer> Rx<O> {
    fn lock(&self) -> MutexGuard<'_, Slots<O::Mark>> {
        // The slots hold no invariant a panicking holder could break half-way (an insert or
        // a remove), so a poisoned lock is still usable.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn release(&self, seq: u32) {
        if self.lock().remove(&seq).is_some() {
            self.space.notify_all();
        }
    }

    /// Hands a decoded answer to the request that waits for `seq`, if any.
    fn deliver(&self, seq: u32, body: Response) {
        let slot = self.lock().remove(&seq);
        match slot {
            Some((tag, waiter)) => {
                self.space.notify_all();
                let mark = self.observer.observe(tag, &body);
                // The waiter may have timed out in between: then nobody takes it, as wanted.
                let _ = waiter.send(Ok(Answer { body, mark }));
            }
            None => tracing::debug!(seq, "serial HSM: answer to no waiting request dropped"),
        }
    }

    /// Fails the requests `seqs` with `error`.
    fn fail(&self, seqs: &[u32], error: &str) {
        let mut failed = Vec::with_capacity(seqs.len());
        {
            let mut slots = self.lock();
            failed.extend(seqs.iter().filter_map(|seq| slots.remove(seq)));
        }
        for (_, waiter) in failed {
            let _ = waiter.send(Err(Error::Hsm(error.to_owned())));
        }
        self.space.notify_all();
    }

    /// Fails every request in flight with `error`.
    fn fail_all(&self, error: &str) {
        let waiting = std::mem::take(&mut *self.lock());
        for (_, (_, waiter)) in waiting {
            let _ = waiter.send(Err(Error::Hsm(error.to_owned())));
        }
        self.space.notify_all();
    }
}

impl<O: Observer> Pipe<O> {
    /// Starts the reader thread on `input` and sends on `output`. `input` must return from
    /// `read` now and then (a read timeout) so the thread notices the pipe being dropped.
    pub fn new(
        input: Box<dyn Read + Send>,
        output: Box<dyn Write + Send>,
        timeout: Duration,
        window: usize,
        observer: O,
    ) -> Result<Self> {
        let rx = Arc::new(Rx {
            slots: Mutex::new(HashMap::new()),
            space: Condvar::new(),
            stop: AtomicBool::new(false),
            observer,
        });
        let reader = {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name("keyward-serial-rx".into())
                .spawn(move || read_answers(input, &rx))
                .map_err(|e| Error::Internal(format!("serial reader thread: {e}")))?
        };
        Ok(Pipe {
            tx: Mutex::new(Tx { seq: 0 }),
            queue: Mutex::new(Queue::default()),
            line: Mutex::new(output),
            rx,
            reader: Some(reader),
            timeout,
            window: window.clamp(1, MAX_WINDOW),
        })
    }

    /// The send lock.
    pub fn lock(&self) -> Result<MutexGuard<'_, Tx>> {
        self.tx
            .lock()
            .map_err(|_| Error::Internal("serial link lock poisoned".into()))
    }

    /// Queues one frame: `frame(seq)` encodes it for the sequence number it is given (its
    /// error is returned: the request cannot be sent at all). `tag` is passed to the observer
    /// with the answer. The frame goes out with the next [`Pipe::flush`]; a write error comes
    /// back as the ticket's answer.
    pub fn send(
        &self,
        tx: &mut Tx,
        tag: u64,
        frame: impl FnOnce(u32) -> Result<Vec<u8>>,
    ) -> Result<Ticket<O>> {
        tx.seq = tx.seq.wrapping_add(1).max(1);
        let seq = tx.seq;
        let bytes = frame(seq)?;
        let (answer_tx, answer) = mpsc::channel();
        {
            let mut slots = self.rx.lock();
            while slots.len() >= self.window {
                slots = self.rx.space.wait(slots).unwrap_or_else(|e| e.into_inner());
            }
            slots.insert(seq, (tag, answer_tx));
        }
        // From here on the slot is freed when the ticket is dropped, answered or not.
        let ticket = Ticket {
            seq,
            answer,
            rx: self.rx.clone(),
        };
        let mut queue = self.queue();
        // A leading delimiter ends whatever partial frame the device may hold (line noise, a
        // request cut by a reset), so this request is not merged into it and lost.
        queue.bytes.push(0);
        queue.bytes.extend_from_slice(&bytes);
        queue.seqs.push(seq);
        Ok(ticket)
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        // Appends and takes only: nothing a panicking holder could leave half-done.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes what is queued, unless another caller is writing: that one writes it before it
    /// stops. Call after `send`, with the send lock released unless the caller must keep
    /// others from sending until its answer is in.
    pub fn flush(&self) {
        {
            let mut queue = self.queue();
            if queue.writing {
                return;
            }
            queue.writing = true;
        }
        loop {
            let (bytes, seqs) = {
                let mut queue = self.queue();
                if queue.bytes.is_empty() {
                    queue.writing = false;
                    return;
                }
                (
                    std::mem::take(&mut queue.bytes),
                    std::mem::take(&mut queue.seqs),
                )
            };
            let mut line = self.line.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = line.write_all(&bytes).and_then(|()| line.flush()) {
                // Those requests are lost as a whole: they fail now and are retried, instead
                // of waiting for their timeouts. Whatever part of a frame went out is closed
                // by the next frame's delimiter.
                self.rx.fail(&seqs, &format!("serial write: {e}"));
            }
        }
    }

    /// Waits for the answer to `ticket` until the timeout passes.
    pub fn wait(&self, ticket: Ticket<O>) -> Result<Answer<O::Mark>> {
        match ticket.answer.recv_timeout(self.timeout) {
            Ok(answer) => answer,
            Err(RecvTimeoutError::Timeout) => {
                self.rx.release(ticket.seq);
                // The answer may have been handed over just before the slot was freed.
                match ticket.answer.try_recv() {
                    Ok(answer) => answer,
                    Err(_) => Err(Error::Hsm(format!(
                        "no answer to request {} within {:?}",
                        ticket.seq, self.timeout
                    ))),
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                Err(Error::Hsm("the serial link's reader stopped".into()))
            }
        }
    }
}

impl<O: Observer> Drop for Pipe<O> {
    fn drop(&mut self) {
        self.rx.stop.store(true, Ordering::SeqCst);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// The reader thread: decodes answer frames off the line until the pipe is dropped.
fn read_answers<O: Observer>(mut input: Box<dyn Read + Send>, rx: &Rx<O>) {
    let mut buf = vec![0u8; MAX_FRAME];
    let mut reader = FrameReader::new(&mut buf);
    let mut chunk = vec![0u8; 4096];
    while !rx.stop.load(Ordering::SeqCst) {
        let n = match input.read(&mut chunk) {
            Ok(0) => {
                // End of input: the line is gone (the device was unplugged). Requests in
                // flight fail; later ones fail when their writes do, or time out.
                rx.fail_all("the serial line closed");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::TimedOut | ErrorKind::WouldBlock | ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                tracing::warn!(error = %e, "serial HSM: read failed");
                rx.fail_all(&format!("serial read: {e}"));
                // Not a busy loop on a line that keeps failing.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        for &b in &chunk[..n] {
            if let Feed::Frame(len) = reader.feed(b) {
                // Frames that do not decode are line noise or damaged answers: the request
                // they were meant for times out and is retried.
                if let Ok(Envelope { seq, body }) = decode_frame::<Response>(reader.frame(len)) {
                    rx.deliver(seq, body);
                }
            }
        }
    }
}
