//! Shape inference and broadcasting checks for `graph.rs`.
use super::*;
use std::collections::HashMap;

struct Shapes(HashMap<String, Vec<usize>>);
impl WeightShapes for Shapes {
    fn weight_shape(&self, name: &str) -> Option<Vec<usize>> {
        self.0.get(name).cloned()
    }
}

#[test]
fn shapes_are_inferred_and_errors_name_the_node() {
    let w = Shapes(HashMap::from([("blk.proj.weight".into(), vec![8, 4]), ("blk.conv.weight".into(), vec![6, 3, 3, 3])]));
    let mut g = Graph::new(&w);
    let x = g.input("x", &[2, 5, 4]);
    let y = g
        .scoped("blk", |g| {
            let w = g.weight("proj.weight")?;
            g.linear(x, w, None)
        })
        .unwrap();
    assert_eq!(g.shape(y), &[2, 5, 8]);
    let img = g.input("img", &[1, 3, 9, 9]);
    let c = g.scoped("blk", |g| {
        let w = g.weight("conv.weight")?;
        g.conv2d(img, w, None, 2, [0, 1, 0, 1])
    });
    assert_eq!(g.shape(c.unwrap()), &[1, 6, 4, 4]);
    let err = g.scoped("blk", |g| g.weight("missing.weight")).unwrap_err();
    assert!(err.to_string().contains("blk.missing.weight"), "{err}");
    let err = g.scoped("mid", |g| g.matmul(x, img, false)).unwrap_err().to_string();
    assert!(err.contains("mid.matmul") && err.contains("[2, 5, 4]"), "{err}");
}

#[test]
fn broadcasting_follows_numpy() {
    assert_eq!(broadcast_shape(&[2, 3, 4], &[4]), Some(vec![2, 3, 4]));
    assert_eq!(broadcast_shape(&[2, 1, 4], &[3, 1]), Some(vec![2, 3, 4]));
    assert_eq!(broadcast_shape(&[2, 3], &[4]), None);
}

#[test]
fn nearest_upsampling_reads_floor_of_dst_times_in_over_out() {
    // torch.nn.functional.interpolate([0, 1, 2], size=5, mode="nearest") = [0, 0, 1, 1, 2].
    let w = Shapes(HashMap::new());
    let mut g = Graph::new(&w);
    let x = g.input("x", &[1, 1, 3, 1]);
    let y = g.upsample_nearest(x, 5, 2).unwrap();
    g.output(y);
    let store = crate::ops::WeightStore::new();
    let inputs = HashMap::from([("x".to_string(), crate::ops::cpu::HostTensor::F32(vec![0.0, 1.0, 2.0]))]);
    let out = crate::ops::cpu::CpuExecutor::new(&store).run(&g, &inputs).unwrap();
    assert_eq!(out[&y], crate::ops::cpu::HostTensor::F32(vec![0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0]));
    assert!(g.upsample_nearest(x, 2, 1).is_err(), "downsampling is refused");
}

#[test]
fn a_parameter_of_another_shape_is_refused_by_name() {
    let w = Shapes(HashMap::from([("blk.proj.weight".into(), vec![8, 4])]));
    let mut g = Graph::new(&w);
    assert_eq!(g.scoped("blk", |g| g.param("proj.weight", &[8, 4])).map(|t| g.shape(t).to_vec()).unwrap(), vec![8, 4]);
    let err = g.scoped("blk", |g| g.param("proj.weight", &[8, 5])).unwrap_err().to_string();
    assert!(err.contains("blk.proj.weight") && err.contains("[8, 4]") && err.contains("[8, 5]"), "{err}");
    // An optional parameter the checkpoint lacks is None, whatever the default.
    assert!(g.scoped("blk", |g| g.param_opt("proj.bias", &[8], true)).unwrap().is_none());
}
