//! Activation memory: tensors whose lifetimes do not overlap share a buffer. The whole
//! graph is planned first and the buffers created at their final sizes; a replay allocates
//! nothing.

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
    /// A buffer of at least `bytes`: the smallest free one that fits; else the largest free
    /// one that is too small, grown to fit (sizes are plans until the program creates the
    /// buffers, so growing one costs only the difference); else a new one.
    pub fn alloc(&mut self, bytes: u64) -> Slot {
        let want = size_class(bytes);
        let sizes = &self.sizes;
        let best = self.free.iter().enumerate().filter(|(_, &s)| sizes[s] >= want && sizes[s] <= want * 2).min_by_key(|(_, &s)| sizes[s]).map(|(i, _)| i);
        let grow = || self.free.iter().enumerate().filter(|(_, &s)| sizes[s] < want).max_by_key(|(_, &s)| sizes[s]).map(|(i, _)| i);
        match best.or_else(grow) {
            Some(i) => {
                let s = self.free.swap_remove(i);
                self.sizes[s] = self.sizes[s].max(want);
                Slot(s)
            }
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

    #[test]
    fn a_free_buffer_too_small_is_grown_instead_of_adding_one() {
        let mut a = Arena::default();
        let x = a.alloc(1 << 20);
        a.release(x);
        let y = a.alloc(3 << 20);
        assert_eq!(y, x, "the free 1 MiB buffer grows to 3 MiB");
        assert_eq!(a.total_bytes(), 3 << 20);
    }
}
