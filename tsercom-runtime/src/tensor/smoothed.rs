//! [`SmoothedDemuxer`]: the rebuilt tensor resampled on a fixed time grid, on a timer.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Demuxer, MuxerConfig, Tensor, TensorError, TensorSpec, Update};
use crate::series::codec::Lerp;
use crate::time::{Clock, Timestamp};

/// Options of a [`SmoothedDemuxer`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SmoothedConfig {
    /// The output grid: one tensor at every multiple of `step` (since the Unix epoch).
    pub step: Duration,
    /// How far behind the clock the output runs, so that data has time to arrive.
    pub playout_delay: Duration,
    /// Two timestamps further apart than this are not interpolated across: the output holds
    /// the earlier value.
    pub max_gap: Duration,
    /// How far past the newest timestamp the output continues (extrapolating the last two
    /// linearly, or holding the last when there is one). Grid points further out are
    /// skipped.
    pub max_extrapolation: Duration,
    /// The history of the underlying [`Demuxer`].
    pub history: MuxerConfig,
    /// The capacity of the output queue of [`SmoothedDemuxer::spawn`] (the timer waits when
    /// it is full).
    pub output_capacity: usize,
}

impl Default for SmoothedConfig {
    /// 10 ms grid, 100 ms playout delay, 1 s gap limit, 50 ms extrapolation.
    fn default() -> Self {
        SmoothedConfig {
            step: Duration::from_millis(10),
            playout_delay: Duration::from_millis(100),
            max_gap: Duration::from_secs(1),
            max_extrapolation: Duration::from_millis(50),
            history: MuxerConfig::default(),
            output_capacity: 64,
        }
    }
}

/// Resamples a tensor stream on a fixed grid with linear interpolation, in the source's
/// dtype (integers round; bool takes the nearer side).
///
/// Drive it yourself ([`apply`](Self::apply) and [`poll`](Self::poll) with the current time)
/// or [`spawn`](Self::spawn) it on a tokio interval with an injectable [`Clock`].
#[derive(Debug, Clone)]
pub struct SmoothedDemuxer {
    demuxer: Demuxer,
    config: SmoothedConfig,
    next: Option<Timestamp>,
    skipped: u64,
}

impl SmoothedDemuxer {
    /// A smoothed demuxer for `spec`.
    pub fn new(spec: TensorSpec, config: SmoothedConfig) -> Self {
        SmoothedDemuxer {
            demuxer: Demuxer::with_config(spec, config.history),
            config,
            next: None,
            skipped: 0,
        }
    }

    /// The underlying demuxer (its stats count rejected updates).
    pub fn demuxer(&self) -> &Demuxer {
        &self.demuxer
    }

    /// Grid points skipped for lack of data (past the extrapolation limit).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Feeds an update.
    pub fn apply(&mut self, update: &Update) -> Result<(), TensorError> {
        self.demuxer.apply(update)?;
        if self.next.is_none() {
            if let Some(first) = self.demuxer.timestamps().first() {
                self.next = Some(grid_at_or_after(*first, self.config.step));
            }
        }
        Ok(())
    }

    /// The outputs of every grid point up to `now - playout_delay` not yet produced.
    pub fn poll(&mut self, now: Timestamp) -> Vec<(Timestamp, Tensor)> {
        let mut out = Vec::new();
        let horizon = now.saturating_sub(self.config.playout_delay);
        let step = i64::try_from(self.config.step.as_nanos())
            .unwrap_or(i64::MAX)
            .max(1);
        while let Some(t) = self.next.filter(|t| *t <= horizon) {
            match self.sample(t) {
                Some(v) => out.push((t, v)),
                None => self.skipped += 1,
            }
            self.next = t.as_nanos().checked_add(step).map(Timestamp::from_nanos);
        }
        out
    }

    fn sample(&self, t: Timestamp) -> Option<Tensor> {
        let (left, right) = self.demuxer.around(t);
        let (lt, lv) = left?;
        if lt == t {
            return Some(lv);
        }
        let frac = |a: Timestamp, b: Timestamp| t.nanos_since(a) as f64 / b.nanos_since(a) as f64;
        match right {
            Some((rt, rv)) if gap(lt, rt) <= self.config.max_gap => {
                Some(Tensor::lerp(&lv, &rv, frac(lt, rt)))
            }
            Some(_) => Some(lv),
            None if gap(lt, t) <= self.config.max_extrapolation => match self.demuxer.before(lt) {
                Some((pt, pv)) if gap(pt, lt) <= self.config.max_gap => {
                    Some(Tensor::lerp(&pv, &lv, frac(pt, lt)))
                }
                _ => Some(lv),
            },
            None => None,
        }
    }

    /// Runs on a tokio interval of `step`, reading the time from `clock`. Returns the handle
    /// that feeds it (dropping it stops the timer) and the outputs.
    pub fn spawn(
        self,
        clock: Arc<dyn Clock>,
    ) -> (SmoothedHandle, mpsc::Receiver<(Timestamp, Tensor)>) {
        let (in_tx, mut in_rx) = mpsc::channel::<Update>(self.config.output_capacity.max(1));
        let (out_tx, out_rx) = mpsc::channel(self.config.output_capacity.max(1));
        let (err_tx, err_rx) = tokio::sync::watch::channel(0u64);
        let mut me = self;
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(me.config.step);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    update = in_rx.recv() => match update {
                        Some(u) => {
                            if me.apply(&u).is_err() {
                                err_tx.send_modify(|n| *n += 1);
                            }
                        }
                        None => break,
                    },
                    _ = tick.tick() => {
                        for item in me.poll(clock.now()) {
                            if out_tx.send(item).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        });
        (
            SmoothedHandle {
                tx: in_tx,
                rejected: err_rx,
                task,
            },
            out_rx,
        )
    }
}

fn gap(a: Timestamp, b: Timestamp) -> Duration {
    b.duration_since(a).unwrap_or(Duration::ZERO)
}

fn grid_at_or_after(t: Timestamp, step: Duration) -> Timestamp {
    let step = i64::try_from(step.as_nanos()).unwrap_or(i64::MAX).max(1);
    let n = t.as_nanos();
    let down = n.div_euclid(step) * step;
    Timestamp::from_nanos(if down == n {
        n
    } else {
        down.saturating_add(step)
    })
}

/// Feeds a spawned [`SmoothedDemuxer`]. Dropping it stops the timer task.
#[derive(Debug)]
pub struct SmoothedHandle {
    tx: mpsc::Sender<Update>,
    rejected: tokio::sync::watch::Receiver<u64>,
    task: JoinHandle<()>,
}

impl SmoothedHandle {
    /// Feeds an update (waits while the input queue is full). Fails only when the task has
    /// stopped (its output receiver was dropped).
    pub async fn apply(&self, update: Update) -> Result<(), Update> {
        self.tx.send(update).await.map_err(|e| e.0)
    }

    /// Updates the task rejected (bad chunks).
    pub fn rejected(&self) -> u64 {
        *self.rejected.borrow()
    }
}

impl Drop for SmoothedHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{CompleteMuxer, DType};
    use crate::time::ManualClock;

    fn ms(n: i64) -> Timestamp {
        Timestamp::from_nanos(n * 1_000_000)
    }

    fn config() -> SmoothedConfig {
        SmoothedConfig {
            step: Duration::from_millis(100),
            playout_delay: Duration::from_millis(200),
            max_gap: Duration::from_millis(1500),
            max_extrapolation: Duration::from_millis(250),
            ..SmoothedConfig::default()
        }
    }

    fn feed(s: &mut SmoothedDemuxer, at: i64, v: [f32; 2]) {
        let spec = s.demuxer().spec().clone();
        let u = CompleteMuxer::new(spec)
            .process(&Tensor::from_vec(vec![2], v.to_vec()).unwrap(), ms(at))
            .unwrap();
        s.apply(&u).unwrap();
    }

    fn values(out: &[(Timestamp, Tensor)]) -> Vec<(i64, Vec<f32>)> {
        out.iter()
            .map(|(t, v)| (t.as_nanos() / 1_000_000, v.to_vec::<f32>().unwrap()))
            .collect()
    }

    #[test]
    fn fixed_grid_interpolation_extrapolation_and_gaps() {
        let spec = TensorSpec::flat(DType::F32, 2, 0.0).unwrap();
        let mut s = SmoothedDemuxer::new(spec, config());
        feed(&mut s, 50, [0.0, 10.0]);
        feed(&mut s, 1050, [10.0, 20.0]);
        assert!(
            s.poll(ms(250)).is_empty(),
            "the first grid point is 100 ms, due at 300 ms"
        );
        let out = s.poll(ms(1500));
        assert_eq!(
            values(&out),
            [
                (100, vec![0.5, 10.5]),
                (200, vec![1.5, 11.5]),
                (300, vec![2.5, 12.5]),
                (400, vec![3.5, 13.5]),
                (500, vec![4.5, 14.5]),
                (600, vec![5.5, 15.5]),
                (700, vec![6.5, 16.5]),
                (800, vec![7.5, 17.5]),
                (900, vec![8.5, 18.5]),
                (1000, vec![9.5, 19.5]),
                (1100, vec![10.5, 20.5]),
                (1200, vec![11.5, 21.5]),
                (1300, vec![12.5, 22.5]),
            ]
        );
        // Past the extrapolation limit (1050 + 250 ms) nothing is produced.
        assert!(s.poll(ms(2000)).is_empty());
        assert_eq!(s.skipped(), 5);
        // After a gap wider than max_gap the earlier value is held.
        feed(&mut s, 4000, [0.0, 0.0]);
        let out = s.poll(ms(2700));
        assert_eq!(values(&out)[0], (1900, vec![10.0, 20.0]));
    }

    #[test]
    fn integers_interpolate_in_their_own_dtype() {
        let spec = TensorSpec::flat(DType::I32, 1, 0.0).unwrap();
        let mut s = SmoothedDemuxer::new(spec.clone(), config());
        for (t, v) in [(0, 0i32), (1000, 10)] {
            let u = CompleteMuxer::new(spec.clone())
                .process(&Tensor::from_vec(vec![1], vec![v]).unwrap(), ms(t))
                .unwrap();
            s.apply(&u).unwrap();
        }
        let out = s.poll(ms(450));
        let v: Vec<Vec<i32>> = out
            .iter()
            .map(|(_, t)| t.to_vec::<i32>().unwrap())
            .collect();
        assert_eq!(v, [vec![0], vec![1], vec![2]]);
        assert_eq!(out[0].1.dtype(), DType::I32);
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_drives_the_output_from_the_injected_clock() {
        let spec = TensorSpec::flat(DType::F32, 2, 0.0).unwrap();
        let clock = ManualClock::new(ms(0));
        let (handle, mut out) =
            SmoothedDemuxer::new(spec.clone(), config()).spawn(Arc::new(clock.clone()));
        let mut mux = CompleteMuxer::new(spec);
        for (t, v) in [(0, [0.0f32, 0.0]), (1000, [10.0, 100.0])] {
            handle
                .apply(
                    mux.process(&Tensor::from_vec(vec![2], v.to_vec()).unwrap(), ms(t))
                        .unwrap(),
                )
                .await
                .unwrap();
        }
        handle
            .apply(Update {
                chunks: vec![crate::tensor::Chunk {
                    starting_index: 9,
                    ..Default::default()
                }],
            })
            .await
            .unwrap();
        // Nothing is due until the injected clock moves past the playout delay.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(out.try_recv().is_err());
        clock.set(ms(700));
        let (t, v) = out.recv().await.unwrap();
        assert_eq!((t, v.to_vec::<f32>().unwrap()), (ms(0), vec![0.0, 0.0]));
        let mut got = Vec::new();
        for _ in 0..5 {
            got.push(out.recv().await.unwrap().0);
        }
        assert_eq!(got, [ms(100), ms(200), ms(300), ms(400), ms(500)]);
        assert_eq!(handle.rejected(), 1);
    }
}
