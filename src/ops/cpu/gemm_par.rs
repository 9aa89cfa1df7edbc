//! The CPU backend's GEMM on its threads: C's rows split (B packed by each thread, or once
//! per panel and shared) or its columns. Every split keeps each sum's order, so the bits
//! are [`gemm`]'s whatever the thread count.

use std::sync::Mutex;

#[cfg(doc)]
use super::gemm::gemm;
use super::gemm::{b_blocks, gemm_from, rows_times_panel, MC, MR, NR};
use super::pack::{ARows, PackA, PackB, RowsFrom};

/// [`gemm`] with the rows of C shared among the CPU backend's threads (natively every
/// core; in the page, the workers of a cross-origin isolated page). Each thread packs B
/// itself: packing is 1/M of the work of a block. Every row's sums run in the same order
/// whatever the thread count, so the result does not depend on it.
#[allow(clippy::too_many_arguments)]
pub fn par_gemm(m: usize, n: usize, k: usize, a: &[f32], lda: usize, b: &(impl PackB + Sync), c: &mut [f32], ldc: usize) {
    assert!(m == 0 || k == 0 || a.len() >= (m - 1) * lda + k, "gemm: A too short");
    par_gemm_from(m, n, k, &ARows { data: a, ld: lda }, b, c, ldc)
}

/// [`par_gemm`] with A from any [`PackA`] source. In the page each panel of B is packed
/// once and shared by the threads ([`par_gemm_shared_b`]): packing is scalar there (an
/// im2col gather, a weight dequantized) and the pool's workers are already running.
/// Natively packing is cheap and each round of threads is a spawn: every thread packing
/// its own B was faster (conv3x3 98-101 against 62-83 GFLOP/s, interleaved).
pub fn par_gemm_from(m: usize, n: usize, k: usize, a: &impl PackA, b: &(impl PackB + Sync), c: &mut [f32], ldc: usize) {
    if cfg!(target_arch = "wasm32") {
        return par_gemm_shared_b(m, n, k, a, b, c, ldc);
    }
    // Below a few tiles per thread the threads cost more than they save.
    let threads = super::threads::count().min(m / (4 * MR)).max(1);
    if threads > 1 && n > 0 && k > 0 {
        let rows = m.div_ceil(threads).next_multiple_of(MR);
        let c = &mut c[..(m - 1) * ldc + n];
        super::threads::for_each_piece(c, rows * ldc, |t, mine| {
            let r0 = t * rows;
            gemm_from(rows.min(m - r0), n, k, &RowsFrom(a, r0), b, mine, ldc)
        });
        return;
    }
    gemm_from(m, n, k, a, b, c, ldc)
}

/// Tasks per thread in the loops of [`par_gemm_shared_b`]: a thread that a busier core
/// (or the page's own work) holds back hands its share to the other threads instead of
/// holding all of them at the loop's end.
const TASKS_PER_THREAD: usize = 4;

/// Most values of B packed at once by [`par_gemm_shared_b`] (32 MB): a panel holds all of
/// K, so past this its columns narrow.
const PANEL_VALUES: usize = 8 << 20;

/// [`par_gemm`] with each panel of B packed once, its strips shared among the threads,
/// then the rows of C (split that way, every thread would pack all of B: gather the whole
/// image, dequantize the whole weight). A panel is all of K for its columns, so that each
/// takes two rounds of the threads, one packing it (none where B comes packed ahead) and
/// one multiplying it, in a few tasks per thread: per block of K, a 3x3 conv over 1280
/// channels would take 60 rounds, each ending with a thread idle. Each task walks the
/// blocks of K in order: the same sums in the same order, so the same bits as `gemm`.
#[allow(clippy::too_many_arguments)]
pub fn par_gemm_shared_b(m: usize, n: usize, k: usize, a: &impl PackA, b: &(impl PackB + Sync), c: &mut [f32], ldc: usize) {
    let threads = super::threads::count().min(m / (4 * MR)).max(1);
    if threads <= 1 || n == 0 || k == 0 {
        return gemm_from(m, n, k, a, b, c, ldc);
    }
    assert!(c.len() >= (m - 1) * ldc + n, "gemm: C too short");
    let (kc_max, nc_max) = b_blocks(k, n);
    // The panel's width does not change a sum (only the blocks of K do).
    let nc_max = nc_max.min((PANEL_VALUES / k / NR * NR).max(NR));
    let k_blocks: Vec<(usize, usize)> = (0..k).step_by(kc_max).map(|p0| (p0, kc_max.min(k - p0))).collect();
    let tasks = (threads * TASKS_PER_THREAD).min(m / (2 * MR)).max(threads);
    let rows = m.div_ceil(tasks).next_multiple_of(MR);
    let c = &mut c[..(m - 1) * ldc + n];
    let mut panel = Vec::new();
    // Each task's A blocks, made once: fresh ones per panel would be page faults natively.
    let apacks: Vec<Mutex<Vec<f32>>> = (0..m.div_ceil(rows)).map(|_| Mutex::new(vec![0.0; kc_max * rows.min(MC).next_multiple_of(MR)])).collect();
    for j0 in (0..n).step_by(nc_max) {
        let nc = nc_max.min(n - j0);
        let strips = nc.div_ceil(NR);
        let ahead: Option<Vec<&[f32]>> = k_blocks.iter().map(|&(p0, kc)| b.packed(p0, kc, j0, nc)).collect();
        let blocks = match ahead {
            Some(blocks) => blocks,
            None => {
                panel.resize(k * strips * NR, 0.0);
                pack_panel(b, &k_blocks, (j0, nc), threads, &mut panel);
                let mut rest = &panel[..];
                k_blocks.iter().map(|&(_, kc)| rest.split_off(..kc * strips * NR).expect("the panel holds every block")).collect()
            }
        };
        super::threads::for_each_piece(c, rows * ldc, |t, mine| {
            let r0 = t * rows;
            let mut apack = apacks[t].lock().unwrap_or_else(|e| e.into_inner());
            for (&(p0, kc), bp) in k_blocks.iter().zip(&blocks) {
                rows_times_panel(rows.min(m - r0), &RowsFrom(a, r0), (p0, kc), (j0, nc), bp, mine, ldc, &mut apack);
            }
        });
    }
}

/// Packs columns `j0..j0 + nc` of B, block of K after block, into `panel`: one round of
/// the threads, a few runs of strips per thread in each block.
fn pack_panel(b: &(impl PackB + Sync), k_blocks: &[(usize, usize)], (j0, nc): (usize, usize), threads: usize, panel: &mut [f32]) {
    let strips = nc.div_ceil(NR);
    let per_task = strips.div_ceil(threads * TASKS_PER_THREAD);
    let mut pieces = Vec::new();
    let mut rest = panel;
    for &(p0, kc) in k_blocks {
        let (block, tail) = rest.split_at_mut(kc * strips * NR);
        rest = tail;
        pieces.extend(block.chunks_mut(per_task * kc * NR).enumerate().map(|(i, piece)| (p0, kc, i * per_task * NR, Mutex::new(piece))));
    }
    super::threads::for_each(pieces.len(), &|t| {
        let (p0, kc, c0, piece) = &pieces[t];
        b.pack(*p0, *kc, j0 + c0, (nc - c0).min(per_task * NR), &mut piece.lock().expect("each piece is packed once"));
    });
}

/// [`par_gemm_from`] with C's columns shared among the threads instead of its rows: for a
/// B whose packing costs more than A's (a weight dequantized from its blocks times a few
/// rows of activations; split by rows, every thread would pack all of B), or for few rows
/// (split by rows, each thread would stream all of a packed B from memory for a handful of
/// rows, and 64 rows split in strips of 6 leave one thread a strip short). The columns go
/// in a few pieces per thread (idle threads take the next), each walking `gemm`'s panels,
/// taking its own strips of each (B packed ahead is read in place), into a block of C
/// apart; the threads then copy the blocks in, by rows. The sums are the same and in the
/// same order, so the bits are `gemm`'s.
pub fn par_gemm_cols(m: usize, n: usize, k: usize, a: &impl PackA, b: &(impl PackB + Sync), c: &mut [f32], ldc: usize) {
    let threads = super::threads::count().min(n / (4 * NR)).max(1);
    if threads <= 1 || m == 0 || k == 0 {
        return gemm_from(m, n, k, a, b, c, ldc);
    }
    // At least two strips a piece: each piece packs all of A (its rows) once per panel.
    let pieces = (threads * TASKS_PER_THREAD).min(n / (2 * NR)).max(threads);
    let cols = n.div_ceil(NR).div_ceil(pieces) * NR;
    let c_read = &*c;
    let blocks = super::threads::map(n.div_ceil(cols), |t| {
        let (c0, w) = (t * cols, cols.min(n - t * cols));
        let mut block: Vec<f32> = (0..m).flat_map(|i| c_read[i * ldc + c0..][..w].iter().copied()).collect();
        columns_times_b(m, n, k, a, b, (c0, w), &mut block);
        block
    });
    // The copy in is m x n values: on one thread it kept a 1024-row linear in the page
    // outside its parallel loops 7% of the time (2-3% now). Below a megabyte it stays on
    // this thread (natively each round of threads is a spawn).
    let rows = if m * n < 1 << 18 { m } else { m.div_ceil(threads * TASKS_PER_THREAD) };
    super::threads::for_each_piece(&mut c[..(m - 1) * ldc + n], rows * ldc, |p, piece| {
        for (i, row) in piece.chunks_mut(ldc).enumerate() {
            let r = p * rows + i;
            for (t, block) in blocks.iter().enumerate() {
                let (c0, w) = (t * cols, cols.min(n - t * cols));
                row[c0..c0 + w].copy_from_slice(&block[r * w..][..w]);
            }
        }
    });
}

/// Columns `c0..c0 + w` of `C += A @ B` into `block` (`m x w`): `gemm`'s panels of B, each
/// cut to those columns (`c0` is a whole number of strips, as is every panel's start).
fn columns_times_b(m: usize, n: usize, k: usize, a: &impl PackA, b: &impl PackB, (c0, w): (usize, usize), block: &mut [f32]) {
    let (kc_max, nc_max) = b_blocks(k, n);
    let mc_max = m.div_ceil(m.div_ceil(MC)).next_multiple_of(MR);
    let mut apack = vec![0.0; kc_max * mc_max];
    let mut bpack = Vec::new();
    for j0 in (0..n).step_by(nc_max) {
        let nc = nc_max.min(n - j0);
        let (ja, jb) = (j0.max(c0), (j0 + nc).min(c0 + w));
        if ja >= jb {
            continue;
        }
        for p0 in (0..k).step_by(kc_max) {
            let kc = kc_max.min(k - p0);
            let strips = (jb - ja).div_ceil(NR) * kc * NR;
            let bp = match b.packed(p0, kc, j0, nc) {
                Some(panel) => &panel[(ja - j0) * kc..][..strips],
                None => {
                    bpack.resize(strips, 0.0);
                    b.pack(p0, kc, ja, jb - ja, &mut bpack);
                    &bpack[..]
                }
            };
            rows_times_panel(m, a, (p0, kc), (ja - c0, jb - ja), bp, block, w, &mut apack);
        }
    }
}
