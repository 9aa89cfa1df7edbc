//! Every op on the GPU (Vulkan; lavapipe on CI) against the CPU backend, natively.

#![cfg(not(target_arch = "wasm32"))]

mod common;

use easel::gpu::{GpuContext, GpuOptions, KernelChoice, Precision};

fn context_with(kernels: KernelChoice) -> GpuContext {
    pollster::block_on(GpuContext::new(&GpuOptions { kernels, ..Default::default() })).expect("a Vulkan adapter (install mesa-vulkan-drivers)")
}

fn context() -> GpuContext {
    context_with(KernelChoice::Auto)
}

fn check_on(ctx: &GpuContext, cases: Vec<common::Case>) {
    // An empty list would pass having checked nothing.
    assert!(!cases.is_empty(), "no cases");
    let failures = pollster::block_on(common::run_all(ctx, cases));
    assert!(failures.is_empty(), "{} failed:\n{}", failures.len(), failures.join("\n"));
}

fn check(cases: Vec<common::Case>) {
    check_on(&context(), cases);
}

/// The tiled kernels (hardware GPUs' default), forced on this software adapter, against the
/// CPU on every linear and conv case: edges of every kind, each weight format, weights and
/// activations split over several bindings. In tiles of each height, then of the height
/// each case's M calls for (mostly 16 rows here: the cases are small).
#[test]
fn tiled_linear_and_conv_kernels_match_cpu() {
    let ctx = context_with(KernelChoice::Tiled);
    assert!(ctx.tiled_kernels(), "Tiled was asked for");
    assert_eq!(ctx.report.kernels, "tiled");
    for rows in [Some(64), Some(32), Some(16), None] {
        let cases = [common::cases_core::cases(), common::cases_conv::cases(), common::cases_split::cases()].into_iter().flatten().collect();
        let failures = pollster::block_on(common::run_all(&ctx.with_tile_rows(rows), cases));
        assert!(failures.is_empty(), "tile rows {rows:?}: {} failed:\n{}", failures.len(), failures.join("\n"));
    }
}

fn fast_context(kernels: KernelChoice) -> GpuContext {
    pollster::block_on(GpuContext::new(&GpuOptions { kernels, precision: Precision::Fast, ..Default::default() })).expect("a Vulkan adapter (install mesa-vulkan-drivers)")
}

/// The fast precision's Q8_0 linears run on int8 dot products (`dot4I8Packed`) with both
/// kernel sets (the tiled one in tiles of each height, then by M), and compute what the
/// same arithmetic gives on the CPU.
#[test]
fn fast_precision_int8_linears_match_their_cpu_twin() {
    let tiled = fast_context(KernelChoice::Tiled);
    let contexts = [fast_context(KernelChoice::Simple)].into_iter().chain([Some(64), Some(32), Some(16), None].map(|rows| tiled.with_tile_rows(rows)));
    for ctx in contexts {
        assert!(ctx.fast_arithmetic().int8_dot, "naga implements dot4I8Packed: {}", ctx.report.summary());
        let failures = pollster::block_on(common::cases_fast::run_int8_cases(&ctx));
        let what = (ctx.report.kernels.clone(), ctx.forced_tile_rows());
        assert!(failures.is_empty(), "{what:?}: {} failed:\n{}", failures.len(), failures.join("\n"));
    }
}

/// With the tiled kernels the fast precision runs Q8_0 convs on int8 dot products too
/// (their taps gathered and quantized per block), computing what the CPU twin does, in
/// tiles of each height, then by M.
#[test]
fn fast_precision_int8_convs_match_their_cpu_twin() {
    let ctx = fast_context(KernelChoice::Tiled);
    for rows in [Some(64), Some(32), Some(16), None] {
        let failures = pollster::block_on(common::cases_fast::run_int8_conv_cases(&ctx.with_tile_rows(rows)));
        assert!(failures.is_empty(), "tile rows {rows:?}: {} failed:\n{}", failures.len(), failures.join("\n"));
    }
}

/// The fast precision's f16 tiles (lavapipe has `shader-f16`) on every linear and conv
/// case, within f16's rounding of the CPU's f32.
#[test]
fn fast_precision_f16_tiles_match_cpu_within_f16_rounding() {
    let ctx = fast_context(KernelChoice::Tiled);
    assert!(ctx.report.shader_f16, "lavapipe offers shader-f16: {}", ctx.report.summary());
    assert!(ctx.fast_arithmetic().f16_tiles);
    assert_eq!(ctx.report.precision, "fast (int8 dot, f16 tiles)");
    check_on(&ctx, common::cases_fast::f16_tile_cases());
}

/// Exact unless asked; f16 tiles only with the tiled kernels (the simple ones stay f32).
#[test]
fn precision_is_exact_unless_fast_is_asked_for() {
    let exact = context_with(KernelChoice::Tiled);
    assert_eq!(exact.fast_arithmetic(), Default::default());
    assert_eq!(exact.report.precision, "exact");
    assert!(exact.report.summary().ends_with("tiled kernels, exact precision"), "{}", exact.report.summary());
    let simple = fast_context(KernelChoice::Simple);
    assert!(simple.fast_arithmetic().int8_dot && !simple.fast_arithmetic().f16_tiles);
    assert_eq!(simple.report.precision, "fast (int8 dot)");
    assert!(simple.with_kernels(true).fast_arithmetic().f16_tiles, "switching kernels keeps the precision");
    assert_eq!(simple.with_precision(Precision::Exact).report.precision, "exact");
    assert_eq!("fast".parse::<Precision>(), Ok(Precision::Fast));
    assert!("half".parse::<Precision>().unwrap_err().contains("expected exact or fast"));
}

/// Auto keeps software adapters on the simple kernels (tiles were 3-7x slower there), and
/// Simple can be forced anywhere.
#[test]
fn kernel_choice_follows_the_adapter_unless_forced() {
    let auto = context();
    assert_eq!(auto.tiled_kernels(), !auto.is_software(), "{}", auto.report.summary());
    assert!(auto.report.summary().ends_with(&format!("{} kernels, exact precision", auto.report.kernels)));
    assert!(!context_with(KernelChoice::Simple).tiled_kernels());
    assert!(auto.with_kernels(true).tiled_kernels() && !auto.with_kernels(false).tiled_kernels());
}

#[test]
fn core_ops_match_cpu() {
    check(common::cases_core::cases());
}

#[test]
fn conv_ops_match_cpu() {
    check(common::cases_conv::cases());
}

/// The norms and softmax reduce on subgroups where the device has them (lavapipe does:
/// the default context takes that path on every case), and in workgroup-memory trees with
/// `allow_subgroups: false` (SwiftShader in Chrome takes that path too). Both match the CPU.
#[test]
fn norm_ops_match_cpu_on_subgroups_and_without() {
    let on = context();
    assert!(on.subgroups() && on.report.subgroups, "lavapipe offers subgroups: {}", on.report.summary());
    assert!(on.report.summary().contains("subgroup reductions"), "{}", on.report.summary());
    check_on(&on, common::cases_norm::cases());
    let off = pollster::block_on(GpuContext::new(&GpuOptions { allow_subgroups: false, ..Default::default() })).expect("a Vulkan adapter");
    assert!(!off.subgroups() && !off.device.features().contains(wgpu::Features::SUBGROUP), "allow_subgroups = false must not enable subgroups");
    check_on(&off, common::cases_norm::cases());
    // Switching on a device opened without them cannot turn them on.
    assert!(!off.with_subgroups(true).subgroups());
    assert!(!on.with_subgroups(false).subgroups());
}

#[test]
fn attention_matches_cpu() {
    check(common::cases_attention::cases());
}

#[test]
fn activations_above_the_binding_limit_match_cpu() {
    check(common::cases_split::cases());
}

#[test]
fn misc_ops_match_cpu() {
    check(common::cases_misc::cases());
}

#[test]
fn f16_linear_and_conv_weights_take_half_the_gpu_memory() {
    use easel::ops::gpu::GpuWeights;
    use easel::ops::{StorageType, WeightStore};
    let ctx = pollster::block_on(GpuContext::new(&GpuOptions::default())).expect("a Vulkan adapter");
    let mut store = WeightStore::new();
    store.insert("proj.weight", &[64, 32], StorageType::F16, &[0.5; 64 * 32]).unwrap();
    store.insert("conv.weight", &[8, 4, 3, 3], StorageType::F16, &[0.5; 8 * 36]).unwrap();
    // CLIP's token table stays on the host (its lookup is gathered there); other
    // embeddings (sliced and added) and norms are widened to f32.
    store.insert("token_embedding.weight", &[10, 32], StorageType::F16, &[0.5; 320]).unwrap();
    store.insert("position_embedding.weight", &[10, 32], StorageType::F16, &[0.5; 320]).unwrap();
    let gpu = GpuWeights::upload(&ctx, &store).unwrap();
    assert_eq!(gpu.bytes, (2 * 64 * 32 + 2 * 8 * 36 + 4 * 320) as u64);
    assert_eq!(gpu.get("proj.weight").unwrap().storage, StorageType::F16);
    assert!(gpu.get("token_embedding.weight").is_err());
    assert_eq!(gpu.host("token_embedding.weight").unwrap().bytes.len(), 2 * 320);
    assert_eq!(gpu.get("position_embedding.weight").unwrap().storage, StorageType::F32);
}

/// The token table is kept on the host and the prompt's rows gathered there when the ids
/// are set: the GPU session gives the CPU's values, exactly, and a bad id is refused.
#[test]
fn an_f16_token_table_looks_up_what_the_cpu_does() {
    use easel::models::session::f32s;
    use easel::models::Session;
    use easel::ops::cpu::HostTensor;
    use easel::ops::{StorageType, WeightStore};
    // Distinct values in every row, f16-exact; ids at both ends of the table.
    let values: Vec<f32> = (0..10 * 6).map(|i| (i as f32 - 29.0) / 8.0).collect();
    let mut store = WeightStore::new();
    store.insert("text.token_embedding.weight", &[10, 6], StorageType::F16, &values).unwrap();
    // One compiled lookup; each call sets new ids on it and runs it.
    let compile = |session: &mut Session| {
        pollster::block_on(session.compile(|g| {
            let ids = g.input_u32("ids", &[1, 4]);
            let table = g.param("text.token_embedding.weight", &[10, 6])?;
            let o = g.embedding(ids, table)?;
            g.output(o);
            Ok(())
        }))
        .unwrap()
    };
    let lookup = |session: &mut Session, c: &mut easel::models::session::Compiled, ids: [u32; 4]| {
        session.set_input(c, "ids", HostTensor::U32(ids.to_vec())).unwrap();
        f32s(pollster::block_on(session.run(c)).unwrap().remove(0))
    };
    let ctx = pollster::block_on(GpuContext::new(&GpuOptions::default())).expect("a Vulkan adapter");
    let (mut session, mut cpu_session) = (Session::gpu(ctx, &store).unwrap(), Session::cpu(store));
    let (mut c, mut cpu_c) = (compile(&mut session), compile(&mut cpu_session));
    let gpu = lookup(&mut session, &mut c, [0, 9, 4, 1]);
    assert_eq!(gpu, lookup(&mut cpu_session, &mut cpu_c, [0, 9, 4, 1]));
    assert_eq!(gpu[6..12], values[54..60], "row 9");
    assert_eq!(gpu[12..18], values[24..30], "row 4");
    // New ids, set again on the same compiled program: the rows follow.
    for ids in [[1u32, 2, 3, 4], [9, 9, 0, 5]] {
        let want: Vec<f32> = ids.iter().flat_map(|&i| values[6 * i as usize..6 * i as usize + 6].to_vec()).collect();
        assert_eq!(lookup(&mut session, &mut c, ids), want);
    }
    let err = session.set_input(&mut c, "ids", HostTensor::U32(vec![0, 10, 1, 2])).unwrap_err();
    assert!(err.to_string().contains("id 10 is past the 10 rows of text.token_embedding.weight"), "{err}");
}

#[test]
fn f16_weights_match_cpu_with_and_without_shader_f16() {
    // With shader-f16 (lavapipe has it) the kernels read f16 vectors; without it (SwiftShader,
    // many adapters) they unpack u32 pairs. Both must match the CPU.
    let f16_cases = || common::cases_core::cases().into_iter().chain(common::cases_conv::cases()).filter(|c| c.name.contains("f16")).collect::<Vec<_>>();
    for allow_f16 in [true, false] {
        let ctx = pollster::block_on(GpuContext::new(&GpuOptions { allow_f16, ..GpuOptions::default() })).expect("a Vulkan adapter");
        let native = ctx.device.features().contains(wgpu::Features::SHADER_F16);
        assert!(allow_f16 || !native, "allow_f16 = false must not enable shader-f16");
        println!("f16 weights read {}", if native { "as f16 vectors (shader-f16)" } else { "by unpack2x16float" });
        let cases = f16_cases();
        assert_eq!(cases.len(), 10);
        let failures = pollster::block_on(common::run_all(&ctx, cases));
        assert!(failures.is_empty(), "allow_f16 = {allow_f16}: {}", failures.join("\n"));
    }
}
