//! The chain API for programs that embed a relay, in the spirit of GUN's:
//!
//! ```no_run
//! # async fn example(gun: fibergun_drive::gun::Gun) -> Result<(), fibergun_drive::gun::GunError> {
//! use serde_json::json;
//! let room = gun.get("chat").get("room1");
//! room.set(&json!({"who": "ann", "text": "hello"})).await?;    // acknowledged once durable
//! let messages = room.map().once().await?;                     // [(key, message), ...]
//! let mut live = room.on()?;                                   // every change from now on
//! while let Some(change) = live.next().await {
//!     println!("{}: {}", change.soul, change.node);
//! }
//! # Ok(()) }
//! ```
//!
//! Every call has an `async` form, which runs on any executor (smol, tokio, ...: it waits on
//! runtime-neutral channels), and a `_blocking` form for plain threads. A [`Gun`] is one
//! in-process connection to the relay ([`crate::local`]), with [`fibergun::client::Client`]
//! turning calls into GUN messages; a thread of its own reads the relay's answers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use fibergun::client::{
    Client, ClientError, ClientEvent, ClientInput, ClientOutput, OpId, Reply, SubId,
};
use fibergun::Limits;
use futures_lite::future::block_on;
use serde::Serialize;
use serde_json::Value as Json;

use crate::clock;
use crate::local::{Connector, LocalConnection};

/// Why a call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GunError {
    /// Refused before anything was sent (an empty path, an array, a value with no key, ...).
    Invalid(String),
    /// The relay refused it; its reason.
    Refused(String),
    /// The value could not be turned into JSON.
    Serialize(String),
    /// The connection to the relay is gone (the relay stopped, or this handle was closed).
    Closed,
}

impl std::fmt::Display for GunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GunError::Invalid(e) => write!(f, "invalid: {e}"),
            GunError::Refused(e) => write!(f, "refused by the server: {e}"),
            GunError::Serialize(e) => write!(f, "cannot serialize the value: {e}"),
            GunError::Closed => f.write_str("the connection to the server is closed"),
        }
    }
}

impl std::error::Error for GunError {}

impl From<ClientError> for GunError {
    fn from(e: ClientError) -> GunError {
        match e {
            ClientError::Invalid(e) => GunError::Invalid(e),
            ClientError::Refused(e) => GunError::Refused(e),
        }
    }
}

/// A write that was acknowledged (so it is durable).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// The node written (for `set` of an object, the new item's node).
    pub soul: String,
    /// For `set`, the key the item was added under.
    pub key: Option<String>,
}

/// A change to a watched node.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The node's soul.
    pub soul: String,
    /// The whole node as now known; links as `{"#":soul}`.
    pub node: Json,
    /// The keys that changed.
    pub changed: Vec<String>,
}

/// Changes kept for a subscriber that has not taken them; past this the oldest are dropped
/// (each change carries the whole node, so the newest says everything).
const CHANGES_KEPT: usize = 1024;

struct State {
    client: Client,
    waiting: HashMap<OpId, async_channel::Sender<Result<Reply, ClientError>>>,
    subs: HashMap<SubId, async_channel::Sender<Change>>,
    closed: bool,
}

struct Inner {
    conn: LocalConnection,
    state: Mutex<State>,
}

impl Inner {
    /// Runs `call` on the client, then hands out what it produced: events to their waiters,
    /// and the frames to send.
    fn with_client<T>(&self, call: impl FnOnce(&mut State) -> T) -> (T, Vec<String>) {
        let mut state = self.state.lock().expect("gun state");
        let out = call(&mut state);
        let frames = drain(&mut state);
        (out, frames)
    }

    async fn send(&self, frames: Vec<String>) -> Result<(), GunError> {
        for f in frames {
            self.conn.send(f).await.map_err(|_| GunError::Closed)?;
        }
        Ok(())
    }

    /// Starts an operation and waits for its outcome.
    async fn op(&self, start: impl FnOnce(&mut Client) -> OpId) -> Result<Reply, GunError> {
        let (rx, frames) = self.with_client(|state| {
            if state.closed {
                return None;
            }
            let (tx, rx) = async_channel::bounded(1);
            let op = start(&mut state.client);
            state.waiting.insert(op, tx);
            Some(rx)
        });
        let rx = rx.ok_or(GunError::Closed)?;
        self.send(frames).await?;
        match rx.recv().await {
            Ok(result) => result.map_err(GunError::from),
            Err(_) => Err(GunError::Closed),
        }
    }

    /// The relay's frames, read on the connection's own thread until it closes.
    fn pump(&self) {
        while let Ok(text) = self.conn.recv_blocking() {
            let input = ClientInput::Frame { text: &text };
            let (handled, frames) =
                self.with_client(|state| state.client.handle_input(clock::now(), input));
            if let Err(e) = handled {
                tracing::error!("the chain API misused its client: {e}");
            }
            for f in frames {
                if self.conn.send_blocking(f).is_err() {
                    break;
                }
            }
        }
        let mut state = self.state.lock().expect("gun state");
        state.closed = true;
        // Waiters see their channel close: Closed.
        state.waiting.clear();
        state.subs.clear();
    }
}

/// Drains the client: events go to whoever waits for them (never blocking), and the frames to
/// send come back.
fn drain(state: &mut State) -> Vec<String> {
    let mut frames = Vec::new();
    while let Some(output) = state.client.poll_output() {
        let event = match output {
            ClientOutput::Send { text } => {
                frames.push(text);
                continue;
            }
            ClientOutput::Event(event) => event,
        };
        match event {
            ClientEvent::Done { op, result } => {
                if let Some(tx) = state.waiting.remove(&op) {
                    let _ = tx.try_send(result);
                }
            }
            ClientEvent::Changed {
                sub,
                soul,
                node,
                changed,
            } => {
                if let Some(tx) = state.subs.get(&sub) {
                    let _ = tx.force_send(Change {
                        soul,
                        node,
                        changed,
                    });
                }
            }
        }
    }
    frames
}

/// The user's handle; closing the connection when the last clone goes.
struct Handle(Arc<Inner>);

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.conn.close();
    }
}

/// An embedded peer's chain API: one in-process connection to a running relay. Cheap to
/// clone; the connection closes when the last clone is dropped (or on [`Gun::close`]).
#[derive(Clone)]
pub struct Gun {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Gun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gun")
            .field("conn", &self.handle.0.conn.id())
            .finish()
    }
}

impl Gun {
    /// Connects to the relay behind `connector`, as the relay itself (its access policy does
    /// not apply; SEA's rules do).
    pub fn connect(connector: &Connector) -> Gun {
        Gun::connect_as(connector, fibergun::access::Principal::Peer)
    }

    /// Connects acting for `principal`: the relay's access policy decides what it may do.
    pub fn connect_as(connector: &Connector, principal: fibergun::access::Principal) -> Gun {
        let conn = connector.open_as(principal);
        let inner = Arc::new(Inner {
            conn,
            state: Mutex::new(State {
                client: Client::new(clock::fresh_seed(), Limits::default()),
                waiting: HashMap::new(),
                subs: HashMap::new(),
                closed: false,
            }),
        });
        let reader = inner.clone();
        std::thread::Builder::new()
            .name("fibergun-gun".into())
            .spawn(move || reader.pump())
            .expect("spawning the connection's reader thread");
        Gun {
            handle: Arc::new(Handle(inner)),
        }
    }

    fn inner(&self) -> &Inner {
        &self.handle.0
    }

    /// The node with soul `soul`: the start of a chain (`gun.get(soul)`).
    pub fn get(&self, soul: &str) -> Chain {
        Chain {
            gun: self.clone(),
            path: vec![soul.to_owned()],
        }
    }

    /// Closes the connection. Calls in flight, and later ones, fail with [`GunError::Closed`].
    pub fn close(&self) {
        self.inner().conn.close();
    }
}

/// A place in the graph: a soul and the keys followed from it.
#[derive(Clone, Debug)]
pub struct Chain {
    gun: Gun,
    path: Vec<String>,
}

impl Chain {
    /// The node or value under `key` (`.get(key)`).
    pub fn get(&self, key: &str) -> Chain {
        let mut path = self.path.clone();
        path.push(key.to_owned());
        Chain {
            gun: self.gun.clone(),
            path,
        }
    }

    /// The soul and keys of this chain.
    pub fn path(&self) -> &[String] {
        &self.path
    }

    fn path_refs(&self) -> Vec<&str> {
        self.path.iter().map(String::as_str).collect()
    }

    /// Writes `value` here (`.put`): an object is merged into the node (nested objects become
    /// linked nodes, as GUN JS makes them); any other value is written under the last key.
    /// Returns once the relay has made it durable.
    pub async fn put<T: Serialize + ?Sized>(&self, value: &T) -> Result<Written, GunError> {
        let value = to_json(value)?;
        let path = self.path_refs();
        let reply = self
            .gun
            .inner()
            .op(|c| c.put(&path, value, clock::wall_ms()))
            .await?;
        written(reply)
    }

    /// [`Chain::put`] for threads.
    pub fn put_blocking<T: Serialize + ?Sized>(&self, value: &T) -> Result<Written, GunError> {
        block_on(self.put(value))
    }

    /// Adds `value` to the set here under a new unique key (`.set`).
    pub async fn set<T: Serialize + ?Sized>(&self, value: &T) -> Result<Written, GunError> {
        let value = to_json(value)?;
        let path = self.path_refs();
        let reply = self
            .gun
            .inner()
            .op(|c| c.set(&path, value, clock::wall_ms()))
            .await?;
        written(reply)
    }

    /// [`Chain::set`] for threads.
    pub fn set_blocking<T: Serialize + ?Sized>(&self, value: &T) -> Result<Written, GunError> {
        block_on(self.set(value))
    }

    /// Deletes what is here, as GUN does: the key this chain ends in is set to `null` in its
    /// parent (so a node linked there drops out of `map`); a chain that is only a soul has every
    /// field of its node set to `null`. `None` when there was nothing to delete.
    pub async fn delete(&self) -> Result<Option<Written>, GunError> {
        if self.path.len() >= 2 {
            if self.load(0).await?.is_none_or(|v| v.is_null()) {
                return Ok(None);
            }
            return self.put(&Json::Null).await.map(Some);
        }
        match self.load(0).await? {
            Some(Json::Object(fields)) => {
                let nulls: serde_json::Map<String, Json> = fields
                    .into_iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, _)| (k, Json::Null))
                    .collect();
                if nulls.is_empty() {
                    return Ok(None);
                }
                self.put(&Json::Object(nulls)).await.map(Some)
            }
            _ => Ok(None),
        }
    }

    /// [`Chain::delete`] for threads.
    pub fn delete_blocking(&self) -> Result<Option<Written>, GunError> {
        block_on(self.delete())
    }

    /// What is here now (`.once`): the node, its links as `{"#":soul}`; or a value; or `None`.
    pub async fn once(&self) -> Result<Option<Json>, GunError> {
        self.load(0).await
    }

    /// [`Chain::once`] for threads.
    pub fn once_blocking(&self) -> Result<Option<Json>, GunError> {
        block_on(self.once())
    }

    /// What is here, with links followed `depth` levels down and joined into one tree.
    pub async fn load(&self, depth: usize) -> Result<Option<Json>, GunError> {
        let path = self.path_refs();
        match self.gun.inner().op(|c| c.read(&path, depth)).await? {
            Reply::Read(found) => Ok(found),
            other => Err(GunError::Refused(format!("unexpected reply {other:?}"))),
        }
    }

    /// [`Chain::load`] for threads.
    pub fn load_blocking(&self, depth: usize) -> Result<Option<Json>, GunError> {
        block_on(self.load(depth))
    }

    /// The items of the node here (`.map()`).
    pub fn map(&self) -> MapChain {
        MapChain {
            chain: self.clone(),
        }
    }

    /// Watches the node here (`.on`): its current fields first, then every change, including
    /// this handle's own writes. Dropping the subscription (or [`Subscription::off`]) stops it.
    pub fn on(&self) -> Result<Subscription, GunError> {
        let inner = self.gun.inner();
        let path = self.path_refs();
        let (started, frames) = inner.with_client(|state| {
            if state.closed {
                return Err(GunError::Closed);
            }
            let sub = state.client.subscribe(&path)?;
            let (tx, rx) = async_channel::bounded(CHANGES_KEPT);
            state.subs.insert(sub, tx);
            Ok((sub, rx))
        });
        let (sub, changes) = started?;
        for f in frames {
            inner.conn.send_blocking(f).map_err(|_| GunError::Closed)?;
        }
        Ok(Subscription {
            gun: self.gun.clone(),
            sub,
            changes,
        })
    }
}

/// The items of a node (`.map()`).
#[derive(Clone, Debug)]
pub struct MapChain {
    chain: Chain,
}

impl MapChain {
    /// Each item now, by key: linked nodes read, values as they are; deleted items
    /// (`null`) left out.
    pub async fn once(&self) -> Result<Vec<(String, Json)>, GunError> {
        match self.chain.load(1).await? {
            Some(Json::Object(items)) => {
                Ok(items.into_iter().filter(|(_, v)| !v.is_null()).collect())
            }
            _ => Ok(Vec::new()),
        }
    }

    /// [`MapChain::once`] for threads.
    pub fn once_blocking(&self) -> Result<Vec<(String, Json)>, GunError> {
        block_on(self.once())
    }

    /// Watches the node holding the items: each change names the items added or changed.
    pub fn on(&self) -> Result<Subscription, GunError> {
        self.chain.on()
    }
}

/// A live subscription (`.on`). Dropping it is `.off()`.
pub struct Subscription {
    gun: Gun,
    sub: SubId,
    changes: async_channel::Receiver<Change>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("sub", &self.sub)
            .finish()
    }
}

impl Subscription {
    /// The next change; `None` once the connection is closed.
    pub async fn next(&mut self) -> Option<Change> {
        self.changes.recv().await.ok()
    }

    /// [`Subscription::next`] for threads.
    pub fn next_blocking(&mut self) -> Option<Change> {
        self.changes.recv_blocking().ok()
    }

    /// A change if one is waiting.
    pub fn try_next(&mut self) -> Option<Change> {
        self.changes.try_recv().ok()
    }

    /// Stops the subscription.
    pub fn off(self) {}
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut state = self.gun.inner().state.lock().expect("gun state");
        state.client.unsubscribe(self.sub);
        state.subs.remove(&self.sub);
    }
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<Json, GunError> {
    serde_json::to_value(value).map_err(|e| GunError::Serialize(e.to_string()))
}

fn written(reply: Reply) -> Result<Written, GunError> {
    match reply {
        Reply::Written { soul, key } => Ok(Written { soul, key }),
        other => Err(GunError::Refused(format!("unexpected reply {other:?}"))),
    }
}
