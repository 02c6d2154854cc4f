//! Spare buffers for the decoder's coefficient blocks and sample planes, reused from one
//! decode to the next.
//!
//! imageapi's server and workers keep glibc's mmap threshold at 256 KiB, so each of these
//! buffers is a fresh mapping that the kernel zero-fills page by page as the decoder first
//! writes it, and unmaps at the end: on one core about a quarter of a grey 2560x1600 job. Jobs
//! need buffers of much the same sizes again and again, so a finished decode hands its large
//! buffers back here and the next one takes them, already resident. What is kept is bounded
//! ([`KEEP_BYTES`] per element type) and only buffers worth it are kept.

use std::sync::Mutex;

/// At most this many bytes of spare buffers are kept, per element type.
const KEEP_BYTES: usize = 16 * 1024 * 1024;
/// Smaller buffers come from the heap cheaply and are not kept.
const MIN_KEPT_BYTES: usize = 256 * 1024;

pub(super) struct Spares<T> {
    buffers: Mutex<Vec<Vec<T>>>,
}

pub(super) static I16: Spares<i16> = Spares::new();
pub(super) static I32: Spares<i32> = Spares::new();
pub(super) static U64: Spares<u64> = Spares::new();
pub(super) static U8: Spares<u8> = Spares::new();

impl<T: Copy + Default> Spares<T> {
    const fn new() -> Self {
        Self { buffers: Mutex::new(Vec::new()) }
    }

    /// An empty buffer with room for `len` elements: the smallest spare that has room without
    /// being more than twice as large, or a new one.
    pub fn with_capacity(&self, len: usize) -> Vec<T> {
        if len * size_of::<T>() >= MIN_KEPT_BYTES {
            if let Ok(mut buffers) = self.buffers.lock() {
                let fit = buffers
                    .iter()
                    .enumerate()
                    .filter(|(_, buffer)| (len..=len.saturating_mul(2)).contains(&buffer.capacity()))
                    .min_by_key(|(_, buffer)| buffer.capacity())
                    .map(|(index, _)| index);
                if let Some(index) = fit {
                    let mut buffer = buffers.swap_remove(index);
                    buffer.clear();
                    return buffer;
                }
            }
        }
        Vec::with_capacity(len)
    }

    /// `len` default (zero) elements.
    pub fn zeroed(&self, len: usize) -> Vec<T> {
        let mut buffer = self.with_capacity(len);
        buffer.resize(len, T::default());
        buffer
    }

    /// Keeps `buffer` for a later decode if it is large enough to be worth it and the spares
    /// stay within [`KEEP_BYTES`]; otherwise frees it.
    pub fn give_back(&self, buffer: Vec<T>) {
        let bytes = buffer.capacity() * size_of::<T>();
        if !(MIN_KEPT_BYTES..=KEEP_BYTES).contains(&bytes) {
            return;
        }
        let Ok(mut buffers) = self.buffers.lock() else { return };
        let mut kept: usize = buffers.iter().map(|b| b.capacity() * size_of::<T>()).sum();
        // Room is made by dropping the smallest spares: large buffers save the most faults.
        while kept + bytes > KEEP_BYTES {
            let Some((index, _)) = buffers.iter().enumerate().min_by_key(|(_, b)| b.capacity()) else { break };
            if buffers[index].capacity() * size_of::<T>() > bytes {
                return;
            }
            kept -= buffers.swap_remove(index).capacity() * size_of::<T>();
        }
        buffers.push(buffer);
    }

    #[cfg(test)]
    fn kept_bytes(&self) -> usize {
        self.buffers.lock().map(|b| b.iter().map(|b| b.capacity() * size_of::<T>()).sum()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_given_back_is_reused_zeroed_and_the_spares_stay_bounded() {
        // A pool of its own: the statics are shared with decodes on other test threads.
        let spares: Spares<u64> = Spares::new();
        let len = MIN_KEPT_BYTES / 8 * 4;
        let mut first = spares.zeroed(len);
        first.iter_mut().for_each(|v| *v = 7);
        let address = first.as_ptr();
        spares.give_back(first);
        let again = spares.zeroed(len - 10);
        assert_eq!(again.as_ptr(), address, "the same memory again");
        assert_eq!(again.len(), len - 10);
        assert!(again.iter().all(|&v| v == 0), "zeroed before reuse");
        spares.give_back(again);
        // Far smaller requests do not take a large spare; small buffers are not kept.
        let small = spares.with_capacity(len / 4);
        assert_ne!(small.as_ptr(), address);
        drop(small);
        spares.give_back(Vec::with_capacity(16));
        assert_eq!(spares.kept_bytes(), len * 8);
        // Never more than KEEP_BYTES, the largest kept when something must go.
        for _ in 0..40 {
            spares.give_back(Vec::with_capacity(KEEP_BYTES / 8 / 3));
        }
        assert!(spares.kept_bytes() <= KEEP_BYTES, "{} kept", spares.kept_bytes());
        assert!(spares.kept_bytes() >= KEEP_BYTES / 3 * 2, "{} kept", spares.kept_bytes());
        spares.give_back(Vec::with_capacity(KEEP_BYTES / 8 + 1));
        assert!(spares.kept_bytes() <= KEEP_BYTES);
    }
}
