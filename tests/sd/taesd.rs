//! The taesd-tiny fixture's check, shared by the native and the browser suites: our TAESD
//! decoder against `scripts/fixtures/taesd_reference.py`, an independent numpy (float64)
//! re-implementation of diffusers' `DecoderTiny` (no torch where the fixture was made).

use easel::models::session::f32s;
use easel::models::taesd::{decode, TaesdConfig};
use easel::models::Session;
use easel::ops::cpu::HostTensor;
use easel::ops::WeightStore;
use easel::weights::safetensors;

use super::refs::parse_references;
use super::refs::rel_err;

/// Relative error bound for one f32 model call.
pub const TAESD_TOL: f64 = 1e-4;

/// The fixture's decoder weights as a converted model names them (`taesd.decoder.*`).
pub fn taesd_store(bytes: &[u8]) -> WeightStore {
    let header = safetensors::parse("taesd", bytes).unwrap();
    let mut store = WeightStore::new();
    for (name, info) in header.tensors.iter().filter(|(n, _)| n.starts_with("decoder.")) {
        let raw = &bytes[(header.data_start + info.begin) as usize..(header.data_start + info.end) as usize];
        store.insert_f32(&format!("taesd.{name}"), &info.shape, &safetensors::to_f32("taesd", name, info, raw).unwrap()).unwrap();
    }
    store
}

/// Decodes every reference case on `session`: (case, relative error) for each.
pub async fn taesd_errors(session: &mut Session, config: &str, reference: &[u8]) -> Vec<(String, f64)> {
    let cfg = TaesdConfig::from_json(&serde_json::from_str(config).unwrap()).unwrap();
    let refs = parse_references("taesd reference", reference);
    let mut out = vec![];
    for case in ["square", "batch2_odd"] {
        let z = &refs[&format!("{case}.latents")];
        let want = &refs[&format!("{case}.decoded")];
        let shape = z.shape.clone();
        let mut c = session
            .compile(|g| {
                let x = g.input("z", &shape);
                let o = g.scoped("taesd", |g| decode(g, &cfg, x))?;
                g.output(o);
                Ok(())
            })
            .await
            .unwrap();
        session.set_input(&mut c, "z", HostTensor::F32(z.values.clone())).unwrap();
        let got = f32s(session.run(&c).await.unwrap().remove(0));
        out.push((case.to_string(), rel_err(&got, &want.values)));
    }
    out
}
