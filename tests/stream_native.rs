//! Streaming weights into GPU buffers in arbitrary pieces (as shards arrive in the browser)
//! leaves exactly the bytes a one-shot upload leaves.

#![cfg(not(target_arch = "wasm32"))]

use easel::gpu::{read_bytes, GpuContext, GpuOptions};
use easel::ops::check::random_values;
use easel::ops::gpu::GpuWeights;
use easel::ops::{StorageType, WeightStore};

fn buffers(ctx: &GpuContext, w: &GpuWeights, name: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for c in &w.get(name).unwrap().chunks {
        for b in [Some(&c.values), c.scales.as_ref()].into_iter().flatten() {
            out.push(pollster::block_on(read_bytes(ctx, b, 0, b.size())).unwrap());
        }
    }
    out
}

#[test]
fn piecewise_writes_equal_a_one_shot_upload() {
    let ctx = pollster::block_on(GpuContext::new(&GpuOptions::default())).unwrap();
    let mut store = WeightStore::new();
    store.insert("q8", &[301, 64], StorageType::Q8_0, &random_values(301 * 64, 1)).unwrap();
    store.insert("q4", &[37, 96], StorageType::Q4_0, &random_values(37 * 96, 2)).unwrap();
    store.insert("f16", &[7, 5], StorageType::F16, &random_values(35, 3)).unwrap();
    store.insert("f32", &[3, 11], StorageType::F32, &random_values(33, 4)).unwrap();
    // Odd chunk sizes: 8 KiB bindings split q8 into chunks of 120 rows (an even block count).
    let limit = 8 << 10;
    let whole = GpuWeights::upload_with_limit(&ctx, &store, limit).unwrap();
    assert!(whole.get("q8").unwrap().chunks.len() > 1);

    let specs: Vec<_> = store.names().into_iter().map(|n| (n.to_string(), store.get(n).unwrap().shape.clone(), store.get(n).unwrap().storage)).collect();
    let mut streamed = GpuWeights::allocate(&ctx, &specs, limit).unwrap();
    let pieces = [7usize, 1000, 33, 1, 68, 2];
    for name in store.names() {
        let bytes = &store.get(name).unwrap().bytes;
        let (mut at, mut i) = (0, 0);
        while at < bytes.len() {
            let end = (at + pieces[i % pieces.len()]).min(bytes.len());
            streamed.write(&ctx, name, &bytes[at..end]).unwrap();
            at = end;
            i += 1;
        }
    }
    streamed.check_complete().unwrap();
    for name in store.names() {
        assert_eq!(buffers(&ctx, &streamed, name), buffers(&ctx, &whole, name), "{name}");
    }
}

#[test]
fn missing_or_extra_bytes_name_the_tensor() {
    let ctx = pollster::block_on(GpuContext::new(&GpuOptions::default())).unwrap();
    let specs = vec![("unet.conv_in.weight".to_string(), vec![4, 32], StorageType::Q8_0)];
    let mut w = GpuWeights::allocate(&ctx, &specs, 1 << 20).unwrap();
    w.write(&ctx, "unet.conv_in.weight", &[0; 34 * 3]).unwrap();
    let err = w.check_complete().unwrap_err().to_string();
    assert!(err.contains("unet.conv_in.weight") && err.contains("not all of its bytes"), "{err}");
    let err = w.write(&ctx, "unet.conv_in.weight", &[0; 34 * 2]).unwrap_err().to_string();
    assert!(err.contains("unet.conv_in.weight") && err.contains("more than its shape holds"), "{err}");
}
