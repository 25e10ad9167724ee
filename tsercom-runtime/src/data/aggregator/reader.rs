//! [`Reader`]: a cursor that sees every stored item once, with late arrivals reported
//! apart.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::{lock, Inner, RemoteDataAggregator};
use crate::data::store::Store;
use crate::data::{DataError, NewData};
use crate::{CallerId, Timestamp};

impl<D: Clone + Send + Sync + 'static> RemoteDataAggregator<D> {
    /// A new reader whose first [`get_new_data`](Reader::get_new_data) returns everything
    /// currently held.
    pub fn reader(&self) -> Reader<D> {
        let mut state = lock(&self.inner.state);
        let id = state.next_reader;
        state.next_reader += 1;
        state.readers.insert(id, 0);
        Reader {
            inner: self.inner.clone(),
            id,
            cursor: 0,
            caller_cursors: HashMap::new(),
            high_water: HashMap::new(),
        }
    }

    /// Everything new for `reader` since its previous call; see [`Reader::get_new_data`].
    /// Fails with [`DataError::ForeignReader`] if `reader` was made by another aggregator.
    pub fn get_new_data(&self, reader: &mut Reader<D>) -> Result<NewData<D>, DataError> {
        if !Arc::ptr_eq(&self.inner, &reader.inner) {
            return Err(DataError::ForeignReader);
        }
        Ok(reader.get_new_data())
    }

    /// What `caller` stored since `reader` last read it; see
    /// [`Reader::get_new_data_for`].
    pub fn get_new_data_for(
        &self,
        reader: &mut Reader<D>,
        caller: CallerId,
    ) -> Result<NewData<D>, DataError> {
        if !Arc::ptr_eq(&self.inner, &reader.inner) {
            return Err(DataError::ForeignReader);
        }
        reader.get_new_data_for(caller)
    }
}

/// A cursor into a [`RemoteDataAggregator`]: each reader sees every item once,
/// independently of other readers.
///
/// A reader keeps its aggregator alive. Dropping the reader unregisters it (the
/// aggregator keeps late-arrival bookkeeping only for what live readers still need).
pub struct Reader<D> {
    inner: Arc<Inner<D>>,
    id: u64,
    /// Arrival number of the last item seen by the last full read.
    cursor: u64,
    /// Callers read one by one since the last full read, and their cursors (never
    /// behind `cursor`).
    caller_cursors: HashMap<CallerId, u64>,
    /// Per caller, the latest time returned so far.
    high_water: HashMap<CallerId, Timestamp>,
}

impl<D> fmt::Debug for Reader<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("id", &self.id)
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

impl<D> Drop for Reader<D> {
    fn drop(&mut self) {
        lock(&self.inner.state).readers.remove(&self.id);
    }
}

impl<D: Clone + Send + Sync + 'static> Reader<D> {
    fn cursor_for(&self, caller: &CallerId) -> u64 {
        self.caller_cursors
            .get(caller)
            .copied()
            .unwrap_or(self.cursor)
    }

    /// Whether anything was stored since this reader last read it (it may have expired
    /// since).
    pub fn has_new_data(&self) -> bool {
        lock(&self.inner.state)
            .callers
            .iter()
            .any(|(c, store)| store.last_arrival() > self.cursor_for(c))
    }

    /// Whether `caller` stored anything since this reader last read it. Unknown callers
    /// are an error.
    pub fn has_new_data_for(&self, caller: CallerId) -> Result<bool, DataError> {
        lock(&self.inner.state)
            .callers
            .get(&caller)
            .map(|store| store.last_arrival() > self.cursor_for(&caller))
            .ok_or(DataError::UnknownCaller(caller))
    }

    /// Everything stored since this reader last read it (everything held, on the first
    /// call), across all callers, excluding items that expired in between.
    ///
    /// Items whose time is earlier than an item of the same caller this reader was
    /// already given are returned in [`NewData::late`], the rest in [`NewData::items`];
    /// each item is returned exactly once.
    pub fn get_new_data(&mut self) -> NewData<D> {
        let cutoff = self.cutoff();
        let mut out = NewData::default();
        let mut guard = lock(&self.inner.state);
        let state = &mut *guard;
        for (&caller, store) in state.callers.iter_mut() {
            if let Some(cutoff) = cutoff {
                store.prune(cutoff);
            }
            let cursor = self.cursor_for(&caller);
            collect(&mut self.high_water, caller, store, cursor, &mut out);
        }
        self.cursor = state.last_arrival;
        self.caller_cursors.clear();
        state.readers.insert(self.id, self.cursor);
        let min_cursor = state
            .readers
            .values()
            .copied()
            .min()
            .unwrap_or(state.last_arrival);
        for store in state.callers.values_mut() {
            store.trim_late(min_cursor);
        }
        if self.high_water.len() > state.callers.len() {
            self.high_water.retain(|c, _| state.callers.contains_key(c));
        }
        out
    }

    /// Like [`get_new_data`](Self::get_new_data) for one caller only: what `caller`
    /// stored since this reader last read it. Other callers' new items stay new.
    pub fn get_new_data_for(&mut self, caller: CallerId) -> Result<NewData<D>, DataError> {
        let cutoff = self.cutoff();
        let mut out = NewData::default();
        let mut guard = lock(&self.inner.state);
        let state = &mut *guard;
        let store = state
            .callers
            .get_mut(&caller)
            .ok_or(DataError::UnknownCaller(caller))?;
        if let Some(cutoff) = cutoff {
            store.prune(cutoff);
        }
        let cursor = self.cursor_for(&caller);
        collect(&mut self.high_water, caller, store, cursor, &mut out);
        // The reader's registered (trimming) cursor stays at its last full read, which
        // is never ahead of a per-caller cursor.
        self.caller_cursors.insert(caller, state.last_arrival);
        Ok(out)
    }

    fn cutoff(&self) -> Option<Timestamp> {
        self.inner
            .retention
            .map(|r| self.inner.clock.now().saturating_sub(r))
    }
}

/// Appends `store`'s items that arrived after `cursor` to `out`, split into in-order and
/// late by the reader's high-water mark for `caller`, and raises that mark.
fn collect<D: Clone>(
    high_water: &mut HashMap<CallerId, Timestamp>,
    caller: CallerId,
    store: &Store<D>,
    cursor: u64,
    out: &mut NewData<D>,
) {
    let idx = store.arrived_since(cursor);
    let Some(last) = idx.last() else {
        return;
    };
    let hw = high_water.get(&caller).copied();
    out.items.reserve(idx.len());
    for i in idx.iter() {
        let item = store.entries[i].item.clone();
        if hw.is_some_and(|hw| item.time < hw) {
            out.late.push((caller, item));
        } else {
            out.items.push((caller, item));
        }
    }
    let newest = store.entries[last].item.time;
    if hw.is_none_or(|hw| newest > hw) {
        high_water.insert(caller, newest);
    }
}
