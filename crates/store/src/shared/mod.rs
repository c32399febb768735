//! SQL that is the same in both dialects, written once: each concern's role trait is
//! implemented here by a macro that a backend expands for its store type. What differs
//! between the dialects is asked of the backend through [`Dialect`].
//!
//! Statements use `$1`-style placeholders, which PostgreSQL and sqlx's SQLite driver both
//! read by number.

use std::borrow::Cow;

use balie_core::Millis;
use sqlx::Transaction;

use crate::plan::{ConversationState, NewMessage, NextIds, Snapshot};
use crate::{Prepared, Result};

pub(crate) mod channels;
pub(crate) mod conversations;
pub(crate) mod directory;
pub(crate) mod journal;
pub(crate) mod leases;
pub(crate) mod live;
pub(crate) mod migrate;
pub(crate) mod outbox;
pub(crate) mod pipeline;
#[cfg(feature = "testing")]
pub(crate) mod testing;

/// A backend's transaction.
pub(crate) type Tx<D> = Transaction<'static, <D as Dialect>::Db>;

/// What a backend does its own way; the SQL written once calls these.
pub(crate) trait Dialect: Sized + Sync {
    type Db: sqlx::Database;

    /// Connections for writes (SQLite: its one writer connection).
    fn writer(&self) -> &sqlx::Pool<Self::Db>;
    /// Connections for reads.
    fn reader(&self) -> &sqlx::Pool<Self::Db>;
    /// A transaction for writes that record timeline events (PostgreSQL: under the write
    /// lock, see `postgres`).
    async fn begin_write(&self) -> Result<Tx<Self>>;
    /// Where commits that appended events are counted (see `Live::changes`).
    fn changes_sender(&self) -> &tokio::sync::watch::Sender<u64>;
    /// Tells other processes, inside `tx`, that it appends events (PostgreSQL `NOTIFY`).
    async fn announce(tx: &mut Tx<Self>) -> Result<()>;
    /// `text` as the backend can store it (PostgreSQL text cannot hold NUL).
    fn storable(text: &str) -> Cow<'_, str>;

    /// Unapplied journal rows, oldest first, at most `limit` (not negative).
    async fn pending_rows(&self, limit: i64) -> Result<Vec<journal::PendingRow>>;
    /// `batch` as it can be stored (see [`Dialect::storable`]).
    fn storable_batch(batch: &[Prepared]) -> Cow<'_, [Prepared]>;
    /// Reads what a batch touches (see [`Snapshot`]).
    async fn load_snapshot(tx: &mut Tx<Self>, batch: &[Prepared]) -> Result<Snapshot>;
    /// The next free ids of the tables a plan writes.
    async fn next_ids(tx: &mut Tx<Self>) -> Result<NextIds>;
    /// A plan used ids up to (not including) `next`.
    async fn ids_taken(tx: &mut Tx<Self>, next: NextIds) -> Result<()>;
    /// Writes new messages, with their search terms.
    async fn insert_messages(tx: &mut Tx<Self>, messages: &[NewMessage]) -> Result<()>;
    /// Sets the final state of stored conversations.
    async fn update_conversations(
        tx: &mut Tx<Self>,
        updates: &[(i64, ConversationState)],
        now: Millis,
    ) -> Result<()>;

    /// Makes a reply's text searchable.
    async fn index_reply(tx: &mut Tx<Self>, message: i64, text: &str) -> Result<()>;
    /// Makes an edited message searchable by its new text only.
    async fn reindex(tx: &mut Tx<Self>, message: i64, text: &str) -> Result<()>;
    /// Marks due outbox rows `sending` (one more attempt each); their ids, in claim order.
    async fn claim_due(tx: &mut Tx<Self>, now: Millis, limit: i64) -> Result<Vec<i64>>;

    /// After a bulk load: whatever makes the new rows fast to query.
    #[cfg(feature = "testing")]
    async fn after_bulk_load(&self) -> Result<()>;
}

/// A negative limit means none; both dialects read the largest `BIGINT` that way.
pub(crate) fn limit_or_all(limit: i64) -> i64 {
    if limit < 0 { i64::MAX } else { limit }
}

/// Implements every role written once for `$store` (a [`Dialect`]).
macro_rules! impl_shared_roles {
    ($store:ty) => {
        $crate::shared::channels::impl_channels!($store);
        $crate::shared::conversations::impl_conversations!($store);
        $crate::shared::directory::impl_directory!($store);
        $crate::shared::journal::impl_journal!($store);
        $crate::shared::leases::impl_leases!($store);
        $crate::shared::live::impl_live!($store);
        $crate::shared::outbox::impl_outbox!($store);
        $crate::shared::pipeline::impl_plan_writes!($store);
        $crate::shared::migrate::impl_migrate!($store);
        #[cfg(feature = "testing")]
        $crate::shared::testing::impl_bulk_load!($store);
    };
}

pub(crate) use impl_shared_roles;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! The measure of "written once": lines the two backends' files share.

    use std::collections::HashSet;
    use std::path::Path;

    /// How many lines in a row make a shared run.
    const RUN: usize = 6;

    /// A file's code lines, normalised: no blank or comment lines, whitespace collapsed,
    /// placeholders (`?`, `?1`, `$1`) alike.
    fn code_lines(path: &Path) -> Vec<String> {
        let text = std::fs::read_to_string(path).unwrap();
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("//"))
            .map(|l| {
                let mut out = String::new();
                let mut chars = l.chars().peekable();
                while let Some(c) = chars.next() {
                    if c == '$' || c == '?' {
                        out.push('?');
                        while chars.peek().is_some_and(char::is_ascii_digit) {
                            chars.next();
                        }
                    } else if c.is_whitespace() {
                        if !out.ends_with(' ') {
                            out.push(' ');
                        }
                    } else {
                        out.push(c);
                    }
                }
                out
            })
            .collect()
    }

    fn backend(dir: &str) -> Vec<Vec<String>> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir);
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
            .collect();
        paths.sort();
        paths.iter().map(|p| code_lines(p)).collect()
    }

    /// Lines of `files` inside a run of [`RUN`] lines that `other` also holds.
    fn shared_lines(files: &[Vec<String>], other: &[Vec<String>]) -> usize {
        let runs: HashSet<&[String]> = other.iter().flat_map(|f| f.windows(RUN)).collect();
        files
            .iter()
            .map(|f| {
                let mut shared = vec![false; f.len()];
                for (i, w) in f.windows(RUN).enumerate() {
                    if runs.contains(w) {
                        shared[i..i + RUN].iter_mut().for_each(|s| *s = true);
                    }
                }
                shared.iter().filter(|s| **s).count()
            })
            .sum()
    }

    #[test]
    fn the_backends_share_at_most_fifteen_percent_of_their_lines() {
        let (sqlite, postgres) = (backend("sqlite"), backend("postgres"));
        let lines = |b: &[Vec<String>]| b.iter().map(Vec::len).sum::<usize>();
        let smaller = lines(&sqlite).min(lines(&postgres));
        let shared = shared_lines(&sqlite, &postgres).max(shared_lines(&postgres, &sqlite));
        assert!(smaller > 300, "both backends were read: {smaller} lines");
        assert!(
            shared * 100 <= smaller * 15,
            "{shared} of {smaller} lines repeat between sqlite/ and postgres/: write them once \
             in shared/"
        );
    }
}
