use super::*;
use crate::backend::CpuBackend;
use crate::generate::SamplingParams;

type B = CpuBackend;

/// Nucleus sampling as the whole sorted row defines it: sort every token (stable, so
/// equal logits keep id order), keep the shortest run from the top whose mass
/// reaches `top_p` (every token at 1, weighing `total`), walk it with `u`.
fn full_sort_reference(logits: &[f32], temperature: f32, top_p: f32, total: f64, u: f64) -> u32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let weight = |i: usize| (f64::from(logits[i] - max) / f64::from(temperature)).exp();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    let (kept, kept_weight) = if top_p >= 1.0 {
        (order, total)
    } else {
        let mut mass = 0.0;
        let mut kept = Vec::new();
        for i in order {
            kept.push(i);
            mass += weight(i) / total;
            if mass >= f64::from(top_p) {
                break;
            }
        }
        let w = kept.iter().map(|&i| weight(i)).sum();
        (kept, w)
    };
    let mut target = u * kept_weight;
    for &i in &kept {
        if target < weight(i) {
            return i as u32;
        }
        target -= weight(i);
    }
    *kept.last().unwrap() as u32
}

/// Rows of logits falling from the top like a language model's (`-steepness * sqrt(rank)`,
/// the ranks shuffled over the ids), rounded to quarters so that many are equal: ties
/// at the top and across the candidates' edge. Steep rows keep most nuclei within the
/// candidates; flat ones send them past.
fn rows(count: usize, vocab: usize, steepness: f32) -> Vec<f32> {
    (0..count * vocab)
        .map(|i| {
            let rank = ((i % vocab) * 7919 + (i / vocab) * 31) % vocab;
            (-(rank as f32).sqrt() * steepness * 4.0).round() / 4.0
        })
        .collect()
}

/// Over many seeds, temperatures and top_p values, on rows with ties: the device's
/// candidates (with their fallback to the whole row) and the host's pick give the
/// tokens of the full-sort reference. Both the candidates' path and the fallback run.
#[test]
fn candidates_and_fallback_pick_what_the_full_sort_picks() {
    let (count, vocab) = (4, 3000);
    let mut settled_by_candidates = 0;
    let mut fell_back = 0;
    for steepness in [3.0, 0.5] {
        let data = rows(count, vocab, steepness);
        let logits = Tensor::<B, 2>::from_data(
            TensorData::new(data.clone(), [count, vocab]),
            &Default::default(),
        );
        for temperature in [0.3, 0.7, 1.0, 1.5] {
            for top_p in [0.1, 0.5, 0.9, 0.95, 1.0] {
                for seed in 0..12 {
                    let params = |row: usize| SamplingParams {
                        temperature,
                        top_p,
                        seed: seed * 100 + row as u64,
                        ..Default::default()
                    };
                    let mut device: Vec<Sampler> =
                        (0..count).map(|r| Sampler::new(&params(r))).collect();
                    let mut host: Vec<Sampler> =
                        (0..count).map(|r| Sampler::new(&params(r))).collect();
                    let mut draws: Vec<Sampler> =
                        (0..count).map(|r| Sampler::new(&params(r))).collect();
                    let summaries = {
                        let refs: Vec<&mut Sampler> = device.iter_mut().collect();
                        summarize(logits.clone(), &refs, CANDIDATES)
                    };
                    let mut refs: Vec<&mut Sampler> = device.iter_mut().collect();
                    let from_device = pick_on_device(logits.clone(), &mut refs);
                    for row in 0..count {
                        let logits_row = &data[row * vocab..(row + 1) * vocab];
                        let u = draws[row].draw();
                        let RowSummary::Sampled(candidates) = &summaries[row] else {
                            panic!("a sampled row");
                        };
                        if draws[row].pick_among(candidates, u).is_some() {
                            settled_by_candidates += 1;
                        } else {
                            fell_back += 1;
                        }
                        let case = format!(
                            "steepness {steepness} T {temperature} top_p {top_p} seed {seed} row {row}"
                        );
                        let want = full_sort_reference(
                            logits_row,
                            temperature,
                            top_p,
                            candidates.total,
                            u,
                        );
                        assert_eq!(from_device[row], want, "device: {case}");
                        let host_total: f64 = logits_row
                            .iter()
                            .map(|&l| draws[row].weight(l, candidates.max))
                            .sum();
                        let want =
                            full_sort_reference(logits_row, temperature, top_p, host_total, u);
                        assert_eq!(host[row].pick(logits_row), want, "host: {case}");
                        // The device's f32 normaliser is the host's f64 one, rounded.
                        assert!(
                            ((candidates.total - host_total) / host_total).abs() < 1e-5,
                            "{case}"
                        );
                    }
                }
            }
        }
    }
    println!("settled by the candidates: {settled_by_candidates}, fell back: {fell_back}");
    assert!(settled_by_candidates > 1000, "{settled_by_candidates}");
    assert!(fell_back > 100, "{fell_back}");
}

/// Greedy rows take the device's argmax, the first of equal maxima as the host's,
/// and draw nothing: a sampled row beside them is unaffected.
#[test]
fn greedy_rows_take_the_first_maximum_beside_sampled_rows() {
    let data = vec![0.0, 3.0, 3.0, -1.0, 5.0, 5.0, 1.0, 0.0, 2.0, 2.0, 2.0, 2.0];
    let logits = Tensor::<B, 2>::from_data(TensorData::new(data, [3, 4]), &Default::default());
    let sampled = SamplingParams {
        temperature: 1.0,
        seed: 5,
        ..Default::default()
    };
    let mut greedy = [
        Sampler::new(&SamplingParams::default()),
        Sampler::new(&SamplingParams::default()),
    ];
    let mut sampler = Sampler::new(&sampled);
    let [a, b] = &mut greedy;
    let picked = pick_on_device(logits.clone(), &mut [a, &mut sampler, b]);
    assert_eq!((picked[0], picked[2]), (1, 0));
    let mut alone = Sampler::new(&sampled);
    assert_eq!(picked[1], alone.pick(&[5.0, 5.0, 1.0, 0.0]));
    // All greedy: the argmax alone crosses.
    let [a, b] = &mut greedy;
    let rows = logits.narrow(0, 0, 1);
    assert_eq!(pick_on_device(rows, &mut [a]), vec![1]);
    let _ = b;
}
