//! The wire codec: WebSocket text frames to [`Message`]s and back.
//!
//! A frame holds one message object or an array of them. Fields the core understands (`#`, `@`,
//! `get`, `put`, `ok`, `err`, `dam`, `pid`, `><`, `##`) are read into typed form; anything else is
//! kept in [`Message::extra`] so a relayed message loses nothing. Outbound messages are written
//! directly as JSON text by the builders re-exported here.
//!
//! This file holds the message and frame types; reading frames lives in `parse.rs`, writing
//! messages (and the builders) in `write.rs`. Both are re-exported, so every function is reached
//! as `wire::…`.

use serde_json::{Map, Value as Json};

use crate::graph::{Graph, Soul};
use crate::lex::{KeyQuery, Range};

mod direct;
mod parse;
mod reader;
mod write;

pub(crate) use parse::replace_lone_surrogates;
pub use parse::{parse_frame, read_frame};
pub use write::{
    ack, dam_error, dam_hello, end_of_answer, error_reply, mark_more, not_found, put_message,
    write_get, write_message,
};

/// A parsed message.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// `#`: the message id. When a sender left it out, the receiver invents one, as GUN does.
    pub id: String,
    /// `@`: the id of the message this one answers.
    pub reply_to: Option<String>,
    /// What the message asks for.
    pub body: Body,
    /// `ok`: passed through untouched (ack sampling hints, WebRTC signalling, ack payloads).
    /// Boxed, as `extra` is: most messages have neither, and a message moves several times on
    /// its way through the core.
    pub ok: Option<Box<Json>>,
    /// `err`: an error text on a reply.
    pub err: Option<String>,
    /// `##`: the hash of a reply's `put`, or of what a GET's sender already has.
    pub hash: Option<i32>,
    /// `><`: the peers this message was already sent to.
    pub skip: Option<String>,
    /// Every field the core does not interpret, kept for relaying (`None` when there are none).
    pub extra: Option<Box<Map<String, Json>>>,
}

impl Message {
    /// The field `name` among those the core does not interpret.
    pub fn extra(&self, name: &str) -> Option<&Json> {
        self.extra.as_ref()?.get(name)
    }
}

/// The part of a message that says what it is.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    /// `dam`: a hop-local control message, never relayed.
    Dam {
        /// The verb: `?`, `!`, `hi`, `opt`, `mob`, `rtc`, …
        verb: String,
        /// `pid`: the sender's peer id, with `?`.
        pid: Option<String>,
    },
    /// `get`: a read.
    Get(Get),
    /// `put`: a write, or with `@` a reply carrying data.
    Put(Graph),
    /// Neither: an ack or error reply (with `@`), or an empty message.
    Other,
}

/// A read request.
#[derive(Clone, Debug, PartialEq)]
pub enum Get {
    /// Fields of one node.
    Node {
        /// The node.
        soul: Soul,
        /// Which of its keys.
        keys: KeyQuery,
        /// `-`: return a range in descending order.
        reverse: bool,
        /// `%`: byte budget of a range reply.
        budget: Option<u64>,
    },
    /// Whole nodes whose souls are in a range (`"#"` given as LEX).
    Souls {
        /// The souls.
        range: Range,
        /// `-`: descending order.
        reverse: bool,
        /// `%`: byte budget.
        budget: Option<u64>,
    },
}

/// A message that could not be read. When its id is known, the error goes back as a reply to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageError {
    /// The message's `#`, if it had a usable one.
    pub id: Option<String>,
    /// What is wrong, for the `err` reply.
    pub reason: String,
}

/// A frame that could not be read at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Over [`Limits::max_frame_bytes`](crate::Limits::max_frame_bytes).
    TooBig {
        /// The frame's size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// Nested deeper than [`Limits::max_json_depth`](crate::Limits::max_json_depth).
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// Not a JSON object or array.
    NotMessages,
    /// A binary WebSocket frame: GUN sends text only.
    Binary {
        /// Its size.
        bytes: usize,
    },
    /// Not valid JSON.
    BadJson(String),
    /// More messages than
    /// [`Limits::max_messages_per_frame`](crate::Limits::max_messages_per_frame).
    TooManyMessages {
        /// How many it held.
        count: usize,
        /// The limit.
        max: usize,
    },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooBig { bytes, max } => {
                write!(
                    f,
                    "Message too big! A frame of {bytes} bytes is over the limit of {max}."
                )
            }
            FrameError::TooDeep { max } => write!(f, "JSON nested deeper than the limit of {max}."),
            FrameError::NotMessages => {
                f.write_str("A frame must be a JSON object or an array of them.")
            }
            FrameError::Binary { bytes } => {
                write!(
                    f,
                    "A binary frame ({bytes} bytes) is not a GUN message; send text frames."
                )
            }
            FrameError::BadJson(e) => write!(f, "DAM JSON parse error: {e}"),
            FrameError::TooManyMessages { count, max } => {
                write!(f, "{count} messages in one frame, over the limit of {max}.")
            }
        }
    }
}

/// One element of a frame: a message, or why it could not be read.
pub type Parsed = Result<Message, MessageError>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;

    /// Reads a frame with default limits, inventing ids `gen1`, `gen2`, …
    pub(super) fn parse(text: &str) -> Result<Vec<Parsed>, FrameError> {
        let mut n = 0;
        parse_frame(text, &Limits::default(), || {
            n += 1;
            format!("gen{n}")
        })
    }

    /// Reads a frame and returns its last message.
    pub(super) fn one(text: &str) -> Parsed {
        parse(text).unwrap().pop().unwrap()
    }

    #[test]
    fn messages_are_relayed_with_every_field() {
        for text in [
            r##"{"#":"g1","get":{"#":"a",".":{"*":"x","-":1},"%":20},"><":"p1,p2","FOO":{"x":[1]}}"##,
            r##"{"#":"g2","get":{"#":{">":"a","<":"b"}}}"##,
            r###"{"#":"r1","@":"g1","put":{"a":{"_":{"#":"a",">":{"x":1}},"x":null}},"##":-5,"ok":{"@":9,"/":1}}"###,
            r##"{"#":"d1","dam":"?","pid":"p"}"##,
            r##"{"#":"k1","@":"p1","ok":{"rtc":{"id":"z"}},"err":"e"}"##,
        ] {
            let first = one(text).unwrap();
            let again = one(&write_message(&first)).unwrap();
            assert_eq!(again, first, "{text}");
        }
    }
}
