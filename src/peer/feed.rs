//! Changes committed by other writers to a store this peer shares with them (relays on one
//! database), as the store's change feed reports them. They reach this peer's subscribers as its
//! own changes do, and keep its cache true (see [`crate::cache`]). After a gap in the feed the
//! cache is dropped and every subscribed node is read again and pushed, a few at a time.

use super::{OpPurpose, Peer};
use crate::graph::{Field, Key, Soul};
use crate::lex::KeyQuery;
use crate::store::{ReadQuery, StoreOp, StoreResult};

/// Reads of subscribed nodes under way at once after a feed gap.
const REFRESH_IN_FLIGHT: usize = 16;

impl Peer {
    pub(super) fn on_store_changed(&mut self, soul: Soul, fields: Vec<(Key, Field)>) {
        let news = self.cache.changed_elsewhere(&soul, fields, self.next_op);
        if !news.is_empty() {
            self.stats.changes_from_feed += 1;
            self.publish(None, None, soul, news);
        }
    }

    pub(super) fn on_feed_gap(&mut self) {
        self.stats.feed_gaps += 1;
        self.cache.feed_gap(self.next_op);
        self.refresh = self.subs.subscribed_souls().into();
        // The operator's lists too: a ban made through another relay during the gap holds here.
        for list in crate::moderation::LISTS {
            self.refresh
                .push_back(Soul::new(list).expect("a reserved soul is not empty"));
        }
        self.refresh_more();
    }

    fn refresh_more(&mut self) {
        while self.refreshing < REFRESH_IN_FLIGHT {
            let Some(soul) = self.refresh.pop_front() else {
                return;
            };
            self.refreshing += 1;
            let budget = self.page_bytes();
            self.issue(OpPurpose::Refresh { soul: soul.clone() }, |op| {
                StoreOp::Read {
                    op,
                    query: ReadQuery::Node {
                        soul,
                        keys: KeyQuery::All,
                        reverse: false,
                        budget,
                    },
                }
            });
        }
    }

    /// A subscribed node read again: pushed whole to its subscribers (they merge by HAM, so
    /// what they have already changes nothing).
    pub(super) fn on_refreshed(&mut self, soul: Soul, result: StoreResult) {
        self.refreshing -= 1;
        if let StoreResult::Read { nodes } = result {
            if let Some(node) = nodes.into_iter().find(|n| n.soul == soul) {
                let fields: Vec<(Key, Field)> = node.fields.into_iter().collect();
                self.publish(None, None, soul, fields);
            }
        }
        // A failed read leaves it to the subscriber's next GET: the store is failing anyway.
        self.refresh_more();
    }
}
