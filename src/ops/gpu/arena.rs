//! Activation memory: tensors whose lifetimes do not overlap share memory. The whole graph
//! is planned before any buffer is created, so a replay allocates nothing.
//!
//! Tensors are placed at offsets inside a few large buffers (pools), greedy by size over
//! lifetimes (Pisarchyk and Lee, "Efficient memory management for deep neural net
//! inference", 2020): the largest tensor first, each into the tightest gap among the
//! tensors it overlaps in time. Whole buffers per tensor fragment badly once maps are cut
//! into bands of many sizes: SDXL's VAE decoder at 512x512 held 333 MB live in 495 MB of
//! buffers that way.
//!
//! A node's inputs and its output may then lie in one buffer. WebGPU forbids a dispatch
//! to bind a buffer both read-only and writable, but allows several writable bindings of
//! it, so every kernel declares its storage `read_write` (the "storage" usage exception).

/// Where a tensor lives: a pool and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub pool: usize,
    pub offset: u64,
}

/// One tensor to place: its bytes and the nodes it lives over (both ends included: the
/// node that makes it and the last that reads it).
#[derive(Debug, Clone, Copy)]
pub struct Life {
    pub bytes: u64,
    pub first: usize,
    pub last: usize,
}

impl Life {
    fn overlaps(&self, o: &Life) -> bool {
        self.first <= o.last && o.first <= self.last
    }
}

/// Offsets are multiples of this (WebGPU's largest minStorageBufferOffsetAlignment).
pub const ALIGN: u64 = 256;

fn aligned(bytes: u64) -> u64 {
    bytes.max(16).div_ceil(ALIGN) * ALIGN
}

type Key = (u64, u64, usize, u64);

fn consider(best: &mut Option<Key>, key: Key) {
    if best.is_none_or(|b| key < b) {
        *best = Some(key);
    }
}

/// The planned pools.
#[derive(Default)]
pub struct Arena {
    /// Byte size of every pool to create.
    pub sizes: Vec<u64>,
}

impl Arena {
    /// Places every tensor in pools of at most `cap` bytes (no tensor may be larger):
    /// `lives[i]`'s place is `slots[i]`.
    pub fn plan(lives: &[Life], cap: u64) -> (Self, Vec<Slot>) {
        let mut order: Vec<usize> = (0..lives.len()).collect();
        // Largest first (ties: earliest first).
        order.sort_by(|&a, &b| lives[b].bytes.cmp(&lives[a].bytes).then(lives[a].first.cmp(&lives[b].first)));
        let mut sizes: Vec<u64> = Vec::new();
        // Per pool: (life, offset, end) of each tensor placed in it.
        let mut held: Vec<Vec<(Life, u64, u64)>> = Vec::new();
        let mut slots = vec![Slot { pool: 0, offset: 0 }; lives.len()];
        for t in order {
            let life = lives[t];
            let size = aligned(life.bytes);
            // Best place: (bytes the pool grows by, gap left over, pool, offset).
            let mut best: Option<Key> = None;
            for p in 0..sizes.len() {
                let mut busy: Vec<(u64, u64)> = held[p].iter().filter(|(l, _, _)| l.overlaps(&life)).map(|&(_, a, b)| (a, b)).collect();
                busy.sort_unstable();
                let mut at = 0u64;
                for (a, b) in busy {
                    if a >= at + size {
                        let key = (0, a - at - size, p, at);
                        consider(&mut best, key);
                    }
                    at = at.max(b);
                }
                if at + size <= cap {
                    let key = ((at + size).saturating_sub(sizes[p]), u64::MAX, p, at);
                    consider(&mut best, key);
                }
            }
            let (p, offset) = match best {
                Some((_, _, p, offset)) => (p, offset),
                None => {
                    sizes.push(0);
                    held.push(Vec::new());
                    (sizes.len() - 1, 0)
                }
            };
            sizes[p] = sizes[p].max(offset + size);
            held[p].push((life, offset, offset + size));
            slots[t] = Slot { pool: p, offset };
        }
        (Arena { sizes }, slots)
    }

    /// Total bytes of all pools: the activation memory the program holds.
    pub fn total_bytes(&self) -> u64 {
        self.sizes.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn life(bytes: u64, first: usize, last: usize) -> Life {
        Life { bytes, first, last }
    }

    #[test]
    fn tensors_that_never_overlap_share_memory_and_overlapping_ones_do_not() {
        // a [0, 1], b [1, 2] overlap at node 1; c [2, 3] can take a's place.
        let (arena, slots) = Arena::plan(&[life(4000, 0, 1), life(4000, 1, 2), life(3900, 2, 3)], 1 << 30);
        assert_eq!(slots[2], slots[0]);
        assert_eq!(slots[1], Slot { pool: 0, offset: 4096 });
        assert_eq!(arena.sizes, vec![8192]);
    }

    #[test]
    fn two_small_tensors_fill_the_gap_one_large_one_left() {
        // The 3 MiB tensor dies at node 1; two 1.5 MiB tensors live together after it.
        let lives = [life(3 << 20, 0, 1), life(1 << 20, 0, 5), life(3 << 19, 2, 4), life(3 << 19, 3, 5)];
        let (arena, slots) = Arena::plan(&lives, 1 << 30);
        assert_eq!(arena.total_bytes(), 4 << 20);
        assert_eq!(slots[2].offset, slots[0].offset);
        assert_eq!(slots[3].offset, slots[0].offset + (3 << 19));
    }

    #[test]
    fn pools_stay_under_the_cap() {
        let lives = [life(600, 0, 9), life(600, 0, 9), life(600, 0, 9)];
        let (arena, slots) = Arena::plan(&lives, 1536);
        assert!(arena.sizes.iter().all(|&s| s <= 1536), "{:?}", arena.sizes);
        assert_eq!(arena.sizes.len(), 2);
        assert!(slots.iter().all(|s| s.offset % ALIGN == 0));
    }

    #[test]
    fn bands_of_many_sizes_need_little_more_than_what_is_live() {
        // A map cut in 8 bands (live together), then each band's 2 temporaries of slightly
        // different sizes, one band at a time, and its half-size output, the map's bands
        // dying one by one as the outputs appear.
        let mut lives = vec![];
        for b in 0..8 {
            lives.push(life(31 << 20, 0, 10 + 4 * b));
        }
        for b in 0..8 {
            let at = 10 + 4 * b;
            lives.push(life((32 << 20) + 4096 * b as u64, at, at + 1));
            lives.push(life((32 << 20) + 8192, at + 1, at + 2));
            lives.push(life(15 << 20, at + 2, 100));
        }
        let peak_live: u64 = (0..100).map(|t| lives.iter().filter(|l| l.first <= t && t <= l.last).map(|l| l.bytes).sum::<u64>()).max().unwrap();
        let (arena, _) = Arena::plan(&lives, 1 << 30);
        assert!(arena.total_bytes() <= peak_live * 11 / 10, "{} planned for {peak_live} live", arena.total_bytes());
    }
}
