//! The open build requests, in memory: those neither complete nor being built.
//!
//! The store stays the record (a request is committed before it is queued here, and
//! the queue is reloaded from it at start-up); this copy spares dispatch a query over
//! every request and build ever made on each event. Requests are kept per builder, so
//! a dispatch pass visits them oldest first but can skip all of a builder's requests
//! at once when none of them can start.

use crate::store::RequestRow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;

/// Open requests by builder, each builder's by id (= submission order).
#[derive(Debug, Default)]
pub struct Queue {
    builders: HashMap<String, BTreeMap<i64, Arc<RequestRow>>>,
    len: usize,
}

impl Queue {
    /// A queue holding `rows` (the store's queued requests at start-up).
    pub fn from_rows(rows: impl IntoIterator<Item = RequestRow>) -> Queue {
        let mut q = Queue::default();
        for r in rows {
            q.push(Arc::new(r));
        }
        q
    }

    /// Queues a request (a new one, or one whose build ended in `retry`); it takes its
    /// place by id. Queuing one already there changes nothing.
    pub fn push(&mut self, request: Arc<RequestRow>) {
        let builder = self.builders.entry(request.builder.clone()).or_default();
        if builder.insert(request.id, request).is_none() {
            self.len += 1;
        }
    }

    /// Removes a request (its build is starting).
    pub fn take(&mut self, builder: &str, id: i64) -> Option<Arc<RequestRow>> {
        let requests = self.builders.get_mut(builder)?;
        let taken = requests.remove(&id)?;
        if requests.is_empty() {
            self.builders.remove(builder);
        }
        self.len -= 1;
        Some(taken)
    }

    /// Whether request `id` is queued.
    pub fn contains(&self, id: i64) -> bool {
        self.builders.values().any(|r| r.contains_key(&id))
    }

    /// Removes every request of `builder` (it was removed), oldest first.
    pub fn take_builder(&mut self, builder: &str) -> Vec<Arc<RequestRow>> {
        let taken: Vec<_> = self
            .builders
            .remove(builder)
            .map(|r| r.into_values().collect())
            .unwrap_or_default();
        self.len -= taken.len();
        taken
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// How many of `builder`'s requests are queued from `id` on (itself included).
    pub fn waiting_from(&self, builder: &str, id: i64) -> usize {
        self.builders
            .get(builder)
            .map_or(0, |r| r.range(id..).count())
    }

    /// Starts a pass over the queue, oldest request first.
    pub fn pass(&self) -> Pass {
        let heads = self
            .builders
            .iter()
            .filter_map(|(b, r)| r.keys().next().map(|&id| Reverse((id, b.clone()))))
            .collect();
        Pass { heads, last: None }
    }
}

/// One walk over the queue in id order. The queue may lose requests between steps
/// (builds starting); each step looks them up afresh.
#[derive(Debug)]
pub struct Pass {
    /// Per builder still in the pass: a lower bound of its next request's id.
    heads: BinaryHeap<Reverse<(i64, String)>>,
    /// The request returned last, whose builder comes back unless skipped.
    last: Option<(i64, String)>,
}

impl Pass {
    /// The oldest request not visited yet in this pass, of a builder not skipped.
    pub fn next(&mut self, queue: &Queue) -> Option<Arc<RequestRow>> {
        if let Some((id, builder)) = self.last.take() {
            self.heads.push(Reverse((id + 1, builder)));
        }
        while let Some(Reverse((from, builder))) = self.heads.pop() {
            let Some((&id, request)) = queue
                .builders
                .get(&builder)
                .and_then(|r| r.range(from..).next())
            else {
                continue;
            };
            if id != from {
                // Its next request is later than thought: take its place in order.
                self.heads.push(Reverse((id, builder)));
                continue;
            }
            self.last = Some((id, builder));
            return Some(request.clone());
        }
        None
    }

    /// Leaves the rest of the last request's builder out of this pass.
    pub fn skip_builder(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, builder: &str) -> RequestRow {
        RequestRow {
            id,
            builder: builder.into(),
            reason: "test".into(),
            properties: serde_json::json!({}),
            submitted_at: 0.0,
            result: None,
            complete: false,
            master: None,
        }
    }

    fn queue(rows: &[(i64, &str)]) -> Queue {
        Queue::from_rows(rows.iter().map(|&(id, b)| row(id, b)))
    }

    fn ids(queue: &Queue, mut each: impl FnMut(&RequestRow, &mut Pass)) -> Vec<i64> {
        let mut pass = queue.pass();
        let mut seen = Vec::new();
        while let Some(r) = pass.next(queue) {
            seen.push(r.id);
            each(&r, &mut pass);
        }
        seen
    }

    #[test]
    fn a_pass_visits_every_request_oldest_first() {
        let q = queue(&[(5, "b"), (1, "a"), (3, "b"), (2, "c"), (4, "a")]);
        assert_eq!(q.len(), 5);
        assert_eq!(ids(&q, |_, _| {}), [1, 2, 3, 4, 5]);
    }

    #[test]
    fn skipping_a_builder_leaves_out_its_later_requests_only() {
        let q = queue(&[(1, "a"), (2, "b"), (3, "a"), (4, "b"), (5, "c"), (6, "a")]);
        let seen = ids(&q, |r, pass| {
            if r.builder == "b" {
                pass.skip_builder();
            }
        });
        assert_eq!(seen, [1, 2, 3, 5, 6]);
    }

    #[test]
    fn requests_taken_during_a_pass_do_not_disturb_it() {
        let mut q = queue(&[(1, "a"), (2, "b"), (3, "a"), (4, "b"), (5, "a")]);
        let mut pass = q.pass();
        let mut started = Vec::new();
        while let Some(r) = pass.next(&q) {
            // Builder a has one free worker, b none.
            if r.builder == "a" && started.is_empty() {
                started.push(q.take("a", r.id).map(|r| r.id));
            } else {
                pass.skip_builder();
            }
        }
        assert_eq!(started, [Some(1)]);
        assert_eq!(ids(&q, |_, _| {}), [2, 3, 4, 5]);
        assert_eq!(q.len(), 4);
    }

    #[test]
    fn a_retried_request_goes_back_to_its_place() {
        let mut q = queue(&[(1, "a"), (2, "a")]);
        let taken = q.take("a", 1).expect("queued");
        q.push(Arc::new(row(3, "a")));
        assert_eq!(ids(&q, |_, _| {}), [2, 3]);
        q.push(taken.clone());
        q.push(taken);
        assert_eq!(ids(&q, |_, _| {}), [1, 2, 3]);
        assert_eq!(q.len(), 3, "queuing twice keeps one");
    }

    #[test]
    fn taking_what_is_not_queued_changes_nothing() {
        let mut q = queue(&[(1, "a")]);
        assert!(q.take("a", 2).is_none());
        assert!(q.take("b", 1).is_none());
        assert_eq!(q.len(), 1);
        assert!(q.take("a", 1).is_some());
        assert_eq!(q.len(), 0);
        assert!(q.pass().next(&q).is_none());
    }

    #[test]
    fn taking_a_builder_takes_all_its_requests_and_no_other() {
        let mut q = queue(&[(1, "a"), (2, "b"), (3, "a")]);
        let taken: Vec<i64> = q.take_builder("a").iter().map(|r| r.id).collect();
        assert_eq!(taken, [1, 3]);
        assert_eq!(q.len(), 1);
        assert!(q.take_builder("a").is_empty());
        assert_eq!(ids(&q, |_, _| {}), [2]);
    }

    #[test]
    fn waiting_counts_a_builders_requests_from_one_on() {
        let q = queue(&[(1, "a"), (2, "b"), (3, "a"), (7, "a")]);
        assert_eq!(q.waiting_from("a", 3), 2);
        assert_eq!(q.waiting_from("a", 1), 3);
        assert_eq!(q.waiting_from("b", 3), 0);
        assert_eq!(q.waiting_from("z", 0), 0);
    }
}
