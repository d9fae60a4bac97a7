//! The `Loss` trait. Losses see logits and targets flattened to `(b, c, n)` (n = voxels), so one
//! implementation serves 2D and 3D; deep supervision is a wrapper over any loss, not a subclass.

use burn::tensor::{Int, Tensor};
use std::sync::{Arc, Condvar, Mutex};

/// What a loss needs to know about the run (from the plans and dataset.json).
#[derive(Debug, Clone, Default)]
pub struct LossSettings {
    /// Sum Dice statistics over the batch before the ratio (plans `batch_dice`).
    pub batch_dice: bool,
    /// dataset.json's `ignore` label: voxels carrying it contribute nothing.
    pub ignore_label: Option<i64>,
    /// Region-based training: the label values of each region (output channel).
    pub regions: Option<Vec<Vec<i64>>>,
    /// Data-parallel training (nnU-Net's `ddp=True`): with `batch_dice`, the replicas' Dice sums are gathered so the
    /// Dice is the global batch's. `None` on one device.
    pub exchange: Option<DiceExchange>,
}

impl LossSettings {
    /// The settings of a plans configuration (`batch_dice`) and the dataset's labels (ignore label, regions).
    pub fn for_configuration(cfg: &serde_json::Map<String, serde_json::Value>, labels: &nnunet_schema::LabelManager) -> LossSettings {
        LossSettings {
            batch_dice: cfg.get("batch_dice").and_then(serde_json::Value::as_bool).unwrap_or(false),
            ignore_label: labels.ignore_label,
            regions: labels.regions.clone(),
            exchange: None,
        }
    }
}

impl PartialEq for LossSettings {
    fn eq(&self, o: &Self) -> bool {
        self.batch_dice == o.batch_dice && self.ignore_label == o.ignore_label && self.regions == o.regions
    }
}

/// One replica's end of nnU-Net's `AllGatherGrad` for the batch Dice of a data-parallel step: every replica
/// contributes its (detached) sums and gets every replica's back, in rank order. Replicas call it the same number of
/// times in the same order (once per deep-supervision level), which makes each call one round.
#[derive(Clone)]
pub struct DiceExchange {
    rank: usize,
    shared: Arc<ExchangeShared>,
}

struct ExchangeShared {
    world: usize,
    state: Mutex<ExchangeState>,
    cv: Condvar,
}

struct ExchangeState {
    slots: Vec<Option<Vec<f32>>>,
    /// Replicas that have read the completed round (the round's slots are cleared when all have).
    read: usize,
    round: u64,
    aborted: bool,
}

impl std::fmt::Debug for DiceExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DiceExchange(rank {} of {})", self.rank, self.shared.world)
    }
}

/// A replica gave up (panicked) while others waited for its Dice sums.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a data-parallel replica failed during the Dice exchange")]
pub struct ExchangeAborted;

impl DiceExchange {
    /// The `world` connected ends, rank 0 first.
    pub fn group(world: usize) -> Vec<DiceExchange> {
        let shared = Arc::new(ExchangeShared {
            world,
            state: Mutex::new(ExchangeState { slots: vec![None; world], read: 0, round: 0, aborted: false }),
            cv: Condvar::new(),
        });
        (0..world).map(|rank| DiceExchange { rank, shared: shared.clone() }).collect()
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world(&self) -> usize {
        self.shared.world
    }

    /// Contribute `local` and wait for every replica's values of this round (rank order).
    pub fn all_gather(&self, local: Vec<f32>) -> Result<Vec<Vec<f32>>, ExchangeAborted> {
        let sh = &self.shared;
        let mut st = sh.state.lock().unwrap_or_else(|e| e.into_inner());
        // a finished round is still being read: wait until it is cleared
        while st.slots[self.rank].is_some() && !st.aborted {
            st = sh.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        let round = st.round;
        st.slots[self.rank] = Some(local);
        sh.cv.notify_all();
        while st.slots.iter().any(Option::is_none) && st.round == round && !st.aborted {
            st = sh.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        if st.aborted {
            return Err(ExchangeAborted);
        }
        let all: Vec<Vec<f32>> = st.slots.iter().map(|s| s.clone().expect("complete round")).collect();
        st.read += 1;
        if st.read == sh.world {
            st.read = 0;
            st.round += 1;
            st.slots.iter_mut().for_each(|s| *s = None);
            sh.cv.notify_all();
        }
        Ok(all)
    }

    /// Release every waiting replica with [`ExchangeAborted`] (called when a replica fails).
    pub fn abort(&self) {
        let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        st.aborted = true;
        self.shared.cv.notify_all();
    }
}

pub trait Loss: Send + Sync {
    /// Scalar loss of `logits (b, c, n)` against the label map `target (b, 1, n)`.
    fn forward(&self, logits: Tensor<3>, target: Tensor<3, Int>, settings: &LossSettings) -> Tensor<1>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_replica_gets_every_contribution_round_after_round() {
        let ends = DiceExchange::group(3);
        let results: Vec<Vec<Vec<Vec<f32>>>> = std::thread::scope(|s| {
            let hs: Vec<_> = ends
                .iter()
                .map(|e| s.spawn(move || (0..50).map(|round| e.all_gather(vec![(e.rank() * 100 + round) as f32]).unwrap()).collect()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for per_rank in &results {
            for (round, all) in per_rank.iter().enumerate() {
                assert_eq!(all, &(0..3).map(|r| vec![(r * 100 + round) as f32]).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn an_aborted_exchange_releases_the_waiting_replicas() {
        let ends = DiceExchange::group(2);
        std::thread::scope(|s| {
            let waiting = s.spawn(|| ends[0].all_gather(vec![1.0]));
            std::thread::sleep(std::time::Duration::from_millis(20));
            ends[1].abort();
            assert_eq!(waiting.join().unwrap(), Err(ExchangeAborted));
        });
    }
}
