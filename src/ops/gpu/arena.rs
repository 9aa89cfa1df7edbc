//! Activation memory: tensors whose lifetimes do not overlap share a buffer. Buffers are
//! created at compile time only; a replay allocates nothing.

/// A buffer handed out by the arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(pub usize);

/// First-fit-by-size allocator over whole buffers.
#[derive(Default)]
pub struct Arena {
    /// Byte size of every buffer created.
    pub sizes: Vec<u64>,
    free: Vec<usize>,
}

/// Buffers are rounded up so that near-equal sizes can share.
fn size_class(bytes: u64) -> u64 {
    let b = bytes.max(16);
    let step = (b.next_power_of_two() / 8).max(256);
    b.div_ceil(step) * step
}

impl Arena {
    /// A buffer of at least `bytes`: the smallest free one that fits, else a new one.
    pub fn alloc(&mut self, bytes: u64) -> Slot {
        let want = size_class(bytes);
        let best = self.free.iter().enumerate().filter(|(_, &s)| self.sizes[s] >= want && self.sizes[s] <= want * 2).min_by_key(|(_, &s)| self.sizes[s]).map(|(i, _)| i);
        match best {
            Some(i) => Slot(self.free.swap_remove(i)),
            None => {
                self.sizes.push(want);
                Slot(self.sizes.len() - 1)
            }
        }
    }

    /// Returns a buffer for reuse by later tensors.
    pub fn release(&mut self, slot: Slot) {
        debug_assert!(!self.free.contains(&slot.0));
        self.free.push(slot.0);
    }

    /// Total bytes of all buffers: the activation memory the program holds.
    pub fn total_bytes(&self) -> u64 {
        self.sizes.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_buffers_are_reused() {
        let mut a = Arena::default();
        let x = a.alloc(4000);
        let y = a.alloc(4000);
        a.release(x);
        let z = a.alloc(3900);
        assert_eq!(z, x);
        assert_ne!(y, z);
        // A much smaller tensor does not pin a big buffer.
        a.release(y);
        let small = a.alloc(64);
        assert_ne!(small, y);
        assert_eq!(a.sizes.len(), 3);
    }
}
