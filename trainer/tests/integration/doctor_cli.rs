//! `trainer doctor --device cpu` as a user (or a pod's start) runs it: one `ok` line
//! per check with its figures, a summary, exit 0; and `--device cuda` on a build
//! without CUDA fails each check with the reason, exit 1.

use std::process::Command;

fn doctor(device: &str) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["doctor", "--device", device])
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    (
        output.status.code(),
        format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)),
    )
}

/// The line of a check, which must exist.
fn line<'a>(report: &'a str, check: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.get(6..).is_some_and(|rest| rest.starts_with(check)))
        .unwrap_or_else(|| panic!("no `{check}` line in:\n{report}"))
}

#[test]
fn every_check_passes_on_the_cpu_with_its_figures() {
    let (code, report) = doctor("cpu");
    assert_eq!(code, Some(0), "{report}");
    assert!(
        report.starts_with("trainer doctor: the CPU backend\n"),
        "{report}"
    );

    let backend = line(&report, "backend");
    assert!(
        backend.starts_with("ok    backend    cpu: burn flex, f32, "),
        "{backend}"
    );
    assert!(backend.contains(" threads"), "{backend}");

    let matmul = line(&report, "matmul");
    assert!(
        matmul.starts_with("ok    matmul     f32 [256x256] @ [256x256] in "),
        "{matmul}"
    );
    assert!(matmul.contains("relative (limit 1e-5)"), "{matmul}");

    let step = line(&report, "lora step");
    assert!(
        step.starts_with("ok    lora step  anneal-tiny, LoRA r8 on all 7 projections, 4 chats ("),
        "{step}"
    );
    // The loss before and after the step, as figures the line states.
    let losses: Vec<f64> = step
        .split("loss ")
        .nth(1)
        .unwrap()
        .split(" on the same batch")
        .next()
        .unwrap()
        .split(" -> ")
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(losses[0] < 2048f64.ln() && losses[1] < losses[0], "{step}");

    // Two copies of the model give one device's figures: on the CPU exactly, as
    // each copy holds one micro-batch and the sum is the same sum.
    let replicas = line(&report, "replicas");
    assert!(
        replicas
            .starts_with("ok    replicas   2 copies of anneal-tiny, 2 steps of 2 x 4 chats in "),
        "{replicas}"
    );
    assert!(
        replicas.ends_with("(0.0e0 apart, at most 1e-5)"),
        "{replicas}"
    );
    assert!(report.contains("\nall 4 checks passed\n"), "{report}");
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_on_a_build_without_it_fails_every_check_and_says_why() {
    let (code, report) = doctor("cuda");
    assert_eq!(code, Some(1), "{report}");
    for check in ["backend", "matmul", "lora step", "replicas"] {
        let failed = line(&report, check);
        assert!(failed.starts_with("FAIL  "), "{failed}");
        assert!(
            failed.contains("rebuild with `--features cuda`"),
            "{failed}"
        );
    }
    assert!(report.contains("\n4 of 4 checks failed\n"), "{report}");
}
