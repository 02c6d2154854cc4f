//! [`Turns`]: items waiting in one FIFO lane per key, served round-robin — each lane with
//! waiting items gets one per round, so a lane that floods delays the others by about one item
//! each, not by its backlog. Password checks take turns per client address, thumbnail jobs
//! per owner.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

#[derive(Debug)]
pub struct Turns<K, T> {
    lanes: HashMap<K, VecDeque<T>>,
    /// Lanes with waiting items, in the order of their next turn.
    order: VecDeque<K>,
    len: usize,
}

impl<K, T> Default for Turns<K, T> {
    fn default() -> Self {
        Self { lanes: HashMap::new(), order: VecDeque::new(), len: 0 }
    }
}

impl<K: Eq + Hash + Clone, T> Turns<K, T> {
    /// Puts `item` at the end of `key`'s lane; a lane that was empty takes the last turn.
    pub fn push(&mut self, key: K, item: T) {
        let lane = self.lanes.entry(key.clone()).or_default();
        if lane.is_empty() {
            self.order.push_back(key);
        }
        lane.push_back(item);
        self.len += 1;
    }

    /// The first item of the lane whose turn it is.
    pub fn pop(&mut self) -> Option<T> {
        while let Some(key) = self.order.pop_front() {
            let Some(lane) = self.lanes.get_mut(&key) else { continue };
            let item = lane.pop_front();
            if lane.is_empty() {
                self.lanes.remove(&key);
            } else {
                self.order.push_back(key);
            }
            if let Some(item) = item {
                self.len -= 1;
                return Some(item);
            }
        }
        None
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Lanes with waiting items.
    pub fn lanes(&self) -> usize {
        self.order.len()
    }

    /// Keeps only the items `keep` says yes to, each lane in its order and turn.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        let mut len = 0;
        self.lanes.retain(|_, lane| {
            lane.retain(&mut keep);
            len += lane.len();
            !lane.is_empty()
        });
        self.len = len;
        let lanes = &self.lanes;
        self.order.retain(|key| lanes.contains_key(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_take_turns_and_keep_their_own_order() {
        let mut turns = Turns::default();
        for n in 0..5 {
            turns.push('a', n);
        }
        turns.push('b', 10);
        turns.push('b', 11);

        let served: Vec<i32> = std::iter::from_fn(|| turns.pop()).collect();

        assert_eq!(served, vec![0, 10, 1, 11, 2, 3, 4]);
        assert!(turns.is_empty() && turns.lanes() == 0);
    }

    #[test]
    fn a_lane_that_empties_and_comes_back_takes_the_last_turn() {
        let mut turns = Turns::default();
        turns.push('a', 1);
        turns.push('b', 2);
        turns.push('b', 3);
        assert_eq!(turns.pop(), Some(1));
        turns.push('a', 4);

        assert_eq!(std::iter::from_fn(|| turns.pop()).collect::<Vec<_>>(), vec![2, 4, 3]);
    }

    #[test]
    fn retain_drops_items_and_emptied_lanes() {
        let mut turns = Turns::default();
        for n in 0..4 {
            turns.push(n % 2, n);
        }
        turns.retain(|n| *n != 1 && *n != 3);

        assert_eq!((turns.len(), turns.lanes()), (2, 1));
        assert_eq!(std::iter::from_fn(|| turns.pop()).collect::<Vec<_>>(), vec![0, 2]);
    }
}
