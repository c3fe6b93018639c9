//! Collects the messages produced while handling one input and packs them into frames: one bare
//! object when a connection gets a single message, an array batch when it gets several.

use crate::peer::ConnId;
use crate::HashMap;

/// Messages waiting to be framed, per connection, in the order connections were first addressed.
#[derive(Debug)]
pub struct Outbox {
    index: HashMap<ConnId, usize>,
    queues: Vec<(ConnId, Vec<String>)>,
    /// Emptied queues, kept for the next connections addressed: most inputs address one or a
    /// few, and a queue's allocation would otherwise be made and freed for each.
    spare: Vec<Vec<String>>,
    batch_bytes: usize,
}

/// At most this many emptied queues are kept, each of at most this capacity.
const SPARE_QUEUES: usize = 64;

impl Outbox {
    /// An empty outbox; array frames are cut at about `batch_bytes`.
    pub fn new(batch_bytes: usize, hasher: foldhash::fast::FixedState) -> Outbox {
        Outbox {
            index: HashMap::with_hasher(hasher.clone()),
            queues: Vec::new(),
            spare: Vec::new(),
            batch_bytes,
        }
    }

    /// Queues one message (a JSON object) for `conn`.
    pub fn push(&mut self, conn: ConnId, message: String) {
        let i = *self.index.entry(conn).or_insert_with(|| {
            let queue = self.spare.pop().unwrap_or_default();
            self.queues.push((conn, queue));
            self.queues.len() - 1
        });
        self.queues[i].1.push(message);
    }

    /// Drops what is queued for a connection that closed.
    pub fn forget(&mut self, conn: ConnId) {
        if let Some(&i) = self.index.get(&conn) {
            self.queues[i].1.clear();
        }
    }

    /// Packs everything queued into frames, in order, and empties the outbox.
    pub fn drain_frames(&mut self, mut emit: impl FnMut(ConnId, String)) {
        self.index.clear();
        for (conn, mut messages) in self.queues.drain(..) {
            let mut at = 0;
            while at < messages.len() {
                if at + 1 == messages.len() {
                    emit(conn, std::mem::take(&mut messages[at]));
                    break;
                }
                // The messages that fit the frame (the first always does), counted first so the
                // frame is allocated once.
                let mut size = messages[at].len() + 2;
                let mut end = at + 1;
                while end < messages.len() && size + messages[end].len() < self.batch_bytes {
                    size += messages[end].len() + 1;
                    end += 1;
                }
                let mut frame = String::with_capacity(size);
                frame.push('[');
                for (i, message) in messages[at..end].iter().enumerate() {
                    if i > 0 {
                        frame.push(',');
                    }
                    frame.push_str(message);
                }
                frame.push(']');
                emit(conn, frame);
                at = end;
            }
            messages.clear();
            if self.spare.len() < SPARE_QUEUES && messages.capacity() <= SPARE_QUEUES {
                self.spare.push(messages);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_message_bare_several_batched_and_cut_at_the_limit() {
        let mut o = Outbox::new(12, foldhash::fast::FixedState::with_seed(0));
        o.push(ConnId(2), "{\"a\":1}".into());
        o.push(ConnId(1), "{\"b\":1}".into());
        o.push(ConnId(1), "{\"c\":1}".into());
        o.push(ConnId(1), "{\"d\":1}".into());
        let mut frames = Vec::new();
        o.drain_frames(|c, f| {
            assert_eq!(f.capacity(), f.len(), "{f}: allocated once, to its size");
            frames.push((c.0, f))
        });
        assert_eq!(
            frames,
            vec![
                (2, "{\"a\":1}".to_string()),
                (1, "[{\"b\":1}]".to_string()),
                (1, "[{\"c\":1}]".to_string()),
                (1, "{\"d\":1}".to_string()),
            ]
        );
        // Under a roomier limit, several go in one array.
        let mut o = Outbox::new(100, foldhash::fast::FixedState::with_seed(0));
        for m in ["{\"b\":1}", "{\"c\":22}", "{\"d\":333}"] {
            o.push(ConnId(1), m.into());
        }
        let mut frames = Vec::new();
        o.drain_frames(|_, f| {
            assert_eq!(f.capacity(), f.len(), "{f}: allocated once, to its size");
            frames.push(f)
        });
        assert_eq!(frames, ["[{\"b\":1},{\"c\":22},{\"d\":333}]"]);
    }
}
