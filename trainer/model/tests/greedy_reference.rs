//! `generate` (the preallocated cache, the batched decoding step) gives the greedy
//! ids of the old path (a concatenated cache through `forward_hidden`, see
//! `common/concat_reference.rs`) on every recorded case, computed on this machine:
//! the host-independent half of `greedy_record`'s proof.

#[path = "common/concat_reference.rs"]
mod concat_reference;
#[path = "common/greedy_cases.rs"]
mod greedy_cases;

use anneal_model::backend::CpuBackend;
use anneal_model::generate::{SamplingParams, generate};
use concat_reference::concat_greedy;
use greedy_cases::{CASES, MODELS, NEW_TOKENS, load, prompt, with_adapter};

type B = CpuBackend;

#[test]
fn greedy_ids_are_the_concatenated_cache_ones() {
    let params = SamplingParams {
        max_new_tokens: NEW_TOKENS,
        ..SamplingParams::default()
    };
    for &(name, dtype) in &MODELS {
        let base = load::<B>(name, dtype);
        let vocab = base.embed_tokens.weight.dims()[0];
        for (c, case) in CASES.iter().enumerate() {
            let model = match case.adapter {
                Some(a) => with_adapter(base.clone(), a),
                None => base.clone(),
            };
            let prompt = prompt(case, vocab);
            let new = generate(&model, &prompt, &[], &params, |_| String::new(), |_| {});
            let old = concat_greedy(&model, &prompt, NEW_TOKENS);
            assert_eq!(new.token_ids, old, "{name} {dtype:?} case {c}");
        }
    }
}
