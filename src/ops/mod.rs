//! The op vocabulary the models are written against, with a CPU backend (candle, the
//! reference and the fallback) and, from issue 3 on, a GPU backend (wgpu + WGSL).

pub mod cpu;
