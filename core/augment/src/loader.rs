//! `nnUNetDataLoader.generate_train_batch` and a bounded, multi-threaded batch producer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use rayon::prelude::*;

use crate::AugmentError;
use crate::config::{Oversampling, is_forced_foreground};
use crate::pipeline::Pipeline;
use crate::rng::Rng;
use crate::sampler::{CaseSource, ClassKey, PatchSampler};
use crate::tensor::{Sample, Tensor};

/// A collated batch. Image `(b, c, z, y, x)` (2D: `(b, c, y, x)`); targets one per DS scale, `(b, c, ...)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub image: Vec<f32>,
    pub image_shape: Vec<usize>,
    pub targets: Vec<(Vec<i16>, Vec<usize>)>,
    /// case indices (into the [`CaseSource`]) of the samples
    pub cases: Vec<usize>,
    /// which samples were forced to contain foreground
    pub forced_fg: Vec<bool>,
}

/// The loader of one split: which cases, how to crop, how to augment.
pub struct DataLoader<S: CaseSource> {
    pub source: Arc<S>,
    /// the cases (indices into `source`) batches are drawn from, uniformly with replacement
    pub cases: Vec<usize>,
    pub batch_size: usize,
    pub sampler: PatchSampler,
    pub oversampling: Oversampling,
    pub pipeline: Arc<Pipeline>,
    /// 2D configuration: batches drop the singleton axis
    pub is_2d: bool,
}

impl<S: CaseSource> DataLoader<S> {
    /// `patch_size` = enlarged sampling patch (training) or the final patch (validation); both 2 or 3 entries.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        source: Arc<S>,
        cases: Vec<usize>,
        batch_size: usize,
        patch_size: &[usize],
        final_patch_size: &[usize],
        oversampling: Oversampling,
        ignore_label_key: Option<ClassKey>,
        pipeline: Pipeline,
    ) -> Result<Self, AugmentError> {
        if cases.is_empty() {
            return Err(AugmentError::InvalidConfig("no cases to sample from".into()));
        }
        if batch_size == 0 {
            return Err(AugmentError::InvalidConfig("batch size must be > 0".into()));
        }
        if patch_size.len() != final_patch_size.len() || !(2..=3).contains(&patch_size.len()) {
            return Err(AugmentError::InvalidConfig(format!("patch sizes {patch_size:?} / {final_patch_size:?} must both be 2D or 3D")));
        }
        let to3 = |p: &[usize]| if p.len() == 2 { [1, p[0], p[1]] } else { [p[0], p[1], p[2]] };
        Ok(DataLoader {
            source,
            cases,
            batch_size,
            sampler: PatchSampler { patch_size: to3(patch_size), final_patch_size: to3(final_patch_size), annotated_key: ignore_label_key },
            oversampling,
            pipeline: Arc::new(pipeline),
            is_2d: patch_size.len() == 2,
        })
    }

    /// Crops and augments one sample.
    pub fn sample(&self, case: usize, force_fg: bool, rng: &mut Rng) -> Result<Sample, AugmentError> {
        let meta = self.source.case_meta(case)?;
        let start = self.sampler.crop_start(&meta, force_fg, rng);
        let (image, seg) = self.source.read_patch(case, start, self.sampler.patch_size)?;
        if image.shape != self.sampler.patch_size || seg.shape != self.sampler.patch_size || seg.channels == 0 {
            return Err(AugmentError::Source(format!("read_patch of case {case} returned a wrong shape")));
        }
        let mut s = Sample::new(image, seg);
        self.pipeline.apply(&mut s, rng);
        Ok(s)
    }

    /// Batch number `index` of the stream seeded with `seed` (deterministic for `(seed, index)`); samples are
    /// made in parallel on the rayon pool when `parallel`.
    pub fn batch(&self, seed: u64, index: u64, parallel: bool) -> Result<Batch, AugmentError> {
        let mut rng = Rng::derive(seed, &[index]);
        let b = self.batch_size;
        let cases: Vec<usize> = (0..b).map(|_| self.cases[rng.choice(self.cases.len())]).collect();
        let forced: Vec<bool> = (0..b)
            .map(|j| match self.oversampling {
                Oversampling::LastPercent(p) => is_forced_foreground(j, b, p),
                Oversampling::Probabilistic(p) => rng.uniform01() < p,
            })
            .collect();
        let make = |j: usize| {
            let mut r = Rng::derive(seed, &[index, j as u64 + 1]);
            self.sample(cases[j], forced[j], &mut r)
        };
        let samples: Vec<Sample> = if parallel {
            (0..b).into_par_iter().map(make).collect::<Result<_, _>>()?
        } else {
            (0..b).map(make).collect::<Result<_, _>>()?
        };
        collate(samples, cases, forced, self.is_2d)
    }
}

fn collate(samples: Vec<Sample>, cases: Vec<usize>, forced_fg: Vec<bool>, is_2d: bool) -> Result<Batch, AugmentError> {
    let b = samples.len();
    let shape_of = |t: &Tensor<f32>| t.shape;
    let first = &samples[0];
    let ishape = shape_of(&first.image);
    let ic = first.image.channels;
    let dims = |c: usize, s: [usize; 3]| -> Vec<usize> { if is_2d { vec![b, c, s[1], s[2]] } else { vec![b, c, s[0], s[1], s[2]] } };
    let mut image = Vec::with_capacity(b * first.image.data.len());
    let mut targets: Vec<(Vec<i16>, Vec<usize>)> = Vec::new();
    for (j, s) in samples.into_iter().enumerate() {
        if s.image.shape != ishape || s.image.channels != ic {
            return Err(AugmentError::Source("samples of a batch differ in shape".into()));
        }
        image.extend_from_slice(&s.image.data);
        let ts = s.into_targets();
        if j == 0 {
            targets = ts.iter().map(|t| (Vec::with_capacity(b * t.data.len()), dims(t.channels, t.shape))).collect();
        }
        if ts.len() != targets.len() {
            return Err(AugmentError::Source("samples of a batch differ in targets".into()));
        }
        for (dst, t) in targets.iter_mut().zip(ts) {
            dst.0.extend_from_slice(&t.data);
        }
    }
    Ok(Batch { image, image_shape: dims(ic, ishape), targets, cases, forced_fg })
}

/// Produces batches on `num_workers` threads ahead of the consumer. Worker `w` makes batches `w, w + n, w + 2n…`
/// of the stream seeded with `seed` and hands them over a bounded channel of `prefetch` batches; the consumer
/// reads the workers round-robin, so the sequence of batches is deterministic for a seed whatever the scheduling.
/// Dropping the producer stops and joins the workers.
pub struct BatchProducer {
    receivers: Vec<Receiver<Result<Batch, AugmentError>>>,
    workers: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    produced: Arc<AtomicUsize>,
    next: usize,
}

impl BatchProducer {
    pub fn new<S: CaseSource + 'static>(loader: Arc<DataLoader<S>>, num_workers: usize, prefetch: usize, seed: u64) -> Self {
        Self::starting_at(loader, num_workers, prefetch, seed, 0)
    }

    /// As [`BatchProducer::new`], but the first batch handed out is batch `first` of the stream: batches are a pure
    /// function of `(seed, index)`, so a resumed training run continues exactly where an uninterrupted one would be.
    pub fn starting_at<S: CaseSource + 'static>(
        loader: Arc<DataLoader<S>>,
        num_workers: usize,
        prefetch: usize,
        seed: u64,
        first: u64,
    ) -> Self {
        let n = num_workers.max(1);
        let stop = Arc::new(AtomicBool::new(false));
        let produced = Arc::new(AtomicUsize::new(0));
        let mut receivers = Vec::with_capacity(n);
        let mut workers = Vec::with_capacity(n);
        for w in 0..n {
            let (tx, rx): (SyncSender<_>, _) = sync_channel(prefetch.max(1));
            receivers.push(rx);
            let loader = loader.clone();
            let stop = stop.clone();
            let produced = produced.clone();
            workers.push(std::thread::spawn(move || {
                let mut index = first + w as u64;
                while !stop.load(Ordering::Acquire) {
                    let mut item = loader.batch(seed, index, false);
                    // send, re-checking the stop flag while the queue is full
                    loop {
                        match tx.try_send(item) {
                            Ok(()) => {
                                produced.fetch_add(1, Ordering::AcqRel);
                                break;
                            }
                            Err(TrySendError::Disconnected(_)) => return,
                            Err(TrySendError::Full(back)) => {
                                if stop.load(Ordering::Acquire) {
                                    return;
                                }
                                item = back;
                                std::thread::park_timeout(Duration::from_millis(2));
                            }
                        }
                    }
                    index += n as u64;
                }
            }));
        }
        BatchProducer { receivers, workers, stop, produced, next: 0 }
    }

    /// the next batch (blocks until its worker has made it)
    pub fn next_batch(&mut self) -> Result<Batch, AugmentError> {
        let w = self.next % self.receivers.len();
        self.next += 1;
        self.receivers[w].recv().map_err(|_| AugmentError::Disconnected)?
    }

    /// batches handed to the queues so far (consumed or waiting)
    pub fn produced(&self) -> usize {
        self.produced.load(Ordering::Acquire)
    }

    pub fn num_workers(&self) -> usize {
        self.workers.len()
    }
}

impl Iterator for BatchProducer {
    type Item = Result<Batch, AugmentError>;
    fn next(&mut self) -> Option<Self::Item> {
        Some(self.next_batch())
    }
}

impl Drop for BatchProducer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.receivers.clear();
        for h in self.workers.drain(..) {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}
