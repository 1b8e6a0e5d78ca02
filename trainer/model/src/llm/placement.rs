//! Which device holds each decoder layer when a model is larger than one device: the
//! layers in consecutive runs ("stages"), one per device, as transformers'
//! `device_map` places them. The embeddings, the final norm and the head stay on the
//! first device, so a batch, its labels and the loss live where they always do; the
//! hidden states cross to the next device at each stage boundary and back to the
//! first after the last layer (a `[tokens, hidden]` copy each, small beside a layer's
//! work), and their gradients cross the same way back in the backward pass. Only one
//! device computes at a time (a pipeline without overlap): placement is for memory.

use std::ops::Range;

/// Consecutive decoder layers per device.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerPlacement<D> {
    /// One per stage, in layer order.
    devices: Vec<D>,
    /// The first layer of each stage, then the number of layers: `devices.len() + 1`
    /// ascending entries.
    bounds: Vec<usize>,
}

impl<D: Clone> LayerPlacement<D> {
    /// Every layer on `device`.
    pub fn single(device: D, layers: usize) -> Self {
        Self::balanced(vec![device], layers)
    }

    /// `layers` split over `devices` in consecutive runs that differ by at most one
    /// layer, the longer runs first: the busiest device holds `ceil(layers / devices)`
    /// layers, which is what the memory plan counts. Never more stages than layers.
    ///
    /// Panics when `devices` is empty.
    pub fn balanced(mut devices: Vec<D>, layers: usize) -> Self {
        assert!(!devices.is_empty(), "a placement needs a device");
        devices.truncate(layers.max(1));
        let stages = devices.len();
        let (base, longer) = (layers / stages, layers % stages);
        let mut bounds = vec![0];
        for stage in 0..stages {
            let len = base + usize::from(stage < longer);
            bounds.push(bounds[stage] + len);
        }
        Self { devices, bounds }
    }

    /// How many devices hold layers.
    pub fn stages(&self) -> usize {
        self.devices.len()
    }

    /// The layers of stage `stage`.
    pub fn layers_of(&self, stage: usize) -> Range<usize> {
        self.bounds[stage]..self.bounds[stage + 1]
    }

    /// The stage decoder layer `layer` belongs to.
    pub fn stage_of(&self, layer: usize) -> usize {
        self.bounds[1..]
            .iter()
            .position(|&end| layer < end)
            .unwrap_or(self.stages() - 1)
    }

    /// The device of stage `stage`.
    pub fn device(&self, stage: usize) -> &D {
        &self.devices[stage]
    }

    /// The device of decoder layer `layer`.
    pub fn layer_device(&self, layer: usize) -> &D {
        self.device(self.stage_of(layer))
    }

    /// Where the embeddings, the final norm and the head are: with the first layers.
    pub fn first(&self) -> &D {
        &self.devices[0]
    }

    /// The first layer of every stage after the first: where activations change device.
    pub fn boundaries(&self) -> Vec<usize> {
        self.bounds[1..self.stages()].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_split_in_consecutive_runs_longest_first() {
        let placement = LayerPlacement::balanced(vec!['a', 'b', 'c'], 80);
        let runs: Vec<_> = (0..3).map(|s| placement.layers_of(s)).collect();
        assert_eq!(runs, vec![0..27, 27..54, 54..80]);
        assert_eq!(placement.stage_of(26), 0);
        assert_eq!(placement.stage_of(27), 1);
        assert_eq!(placement.stage_of(79), 2);
        assert_eq!(*placement.layer_device(53), 'b');
        assert_eq!(*placement.first(), 'a');
        assert_eq!(placement.boundaries(), vec![27, 54]);
    }

    /// The busiest device holds `ceil(layers / devices)`, what the memory plan assumes.
    #[test]
    fn the_busiest_stage_holds_the_ceiling_share() {
        for (devices, layers) in [(2, 80), (4, 80), (3, 28), (8, 28), (5, 3)] {
            let placement = LayerPlacement::balanced(vec![(); devices], layers);
            let longest = (0..placement.stages())
                .map(|s| placement.layers_of(s).len())
                .max()
                .unwrap();
            assert_eq!(
                longest,
                layers.div_ceil(placement.stages()),
                "{devices}x{layers}"
            );
            assert_eq!(placement.layers_of(placement.stages() - 1).end, layers);
        }
    }

    #[test]
    fn more_devices_than_layers_leaves_the_extra_ones_out() {
        let placement = LayerPlacement::balanced(vec![0, 1, 2, 3, 4], 3);
        assert_eq!(placement.stages(), 3);
        assert_eq!(placement.boundaries(), vec![1, 2]);
        assert_eq!(
            LayerPlacement::single(7, 4).boundaries(),
            Vec::<usize>::new()
        );
    }
}
