//! Rate limits: before a batch commits, its dispatches to a rate-limited queue reserve start
//! times on the queue's GCRA in the ledger (shared by every coordinator); rows are dated when
//! they may start, and the tasks not due yet wait in the timer heap (or, after a crash, for the
//! outbox sweeper, which goes by the row's date).

use std::collections::BTreeMap;

use foldhash::HashSet;

use crate::pending::{Paced, Pending};
use crate::{Coordinator, Error};

impl Coordinator {
    pub(crate) async fn pace(&mut self, p: &mut Pending) -> Result<(), Error> {
        if p.paced.is_empty() {
            return Ok(());
        }
        let now = kora_model::now_ms();
        // One reservation per queue and earliest start: a batch's first dispatches share one.
        let mut groups: BTreeMap<(String, u64), Vec<Paced>> = BTreeMap::new();
        for item in std::mem::take(&mut p.paced) {
            groups
                .entry((item.queue.clone(), item.not_before))
                .or_default()
                .push(item);
        }
        let mut held: HashSet<usize> = HashSet::default();
        for ((queue, not_before), items) in groups {
            let Some(limit) = self.env.cfg.rate_limits.get(&queue).copied() else {
                continue;
            };
            let interval = limit.interval_ms();
            let n = u32::try_from(items.len()).unwrap_or(u32::MAX);
            let begin = self
                .store
                .reserve_rate(&queue, interval, n, not_before as f64)
                .await?;
            let tolerance = f64::from(limit.burst.max(1) - 1) * interval;
            for (i, item) in items.into_iter().enumerate() {
                let at = (begin + i as f64 * interval - tolerance)
                    .max(not_before as f64)
                    .ceil() as u64;
                if let Some(row) = p.batch.new_attempts.get_mut(item.row) {
                    row.at_ms = at;
                }
                let (run_id, node, iteration, attempt) = item.attempt;
                match item.publish {
                    Some(idx) if at > now => {
                        held.insert(idx);
                        self.metrics.tasks_paced.inc();
                        p.retries.push((at, run_id, node, iteration, attempt));
                    }
                    Some(_) => {}
                    None => {
                        if at > not_before {
                            self.metrics.tasks_paced.inc();
                        }
                        p.retries.push((at, run_id, node, iteration, attempt));
                    }
                }
            }
        }
        if !held.is_empty() {
            hold_back(p, &held);
        }
        Ok(())
    }
}

/// Takes the held tasks out of the batch's publish list (they are sent when due), keeping the
/// task keys of the rest pointing at their messages.
fn hold_back(p: &mut Pending, held: &HashSet<usize>) {
    let mut moved = vec![None; p.publish.len()];
    for (i, m) in std::mem::take(&mut p.publish).into_iter().enumerate() {
        if !held.contains(&i) {
            moved[i] = Some(p.publish.len());
            p.publish.push(m);
        }
    }
    p.task_keys = std::mem::take(&mut p.task_keys)
        .into_iter()
        .filter_map(|(i, k)| moved.get(i).copied().flatten().map(|j| (j, k)))
        .collect();
}
