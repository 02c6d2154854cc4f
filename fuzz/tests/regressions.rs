//! Every input that once made a target panic or hang (`fuzz/regressions/`), and the made seeds,
//! pass both targets; and a short deterministic run finds nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed expectation is the test failing

use imageapi_fuzz::{made_seeds, mutate, Rng, Target};

#[test]
fn the_regression_inputs_and_the_made_seeds_pass_both_targets() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    let mut inputs: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("fuzz/regressions")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .map(|p| (p.display().to_string(), std::fs::read(&p).expect("read")))
        .collect();
    inputs.extend(made_seeds().into_iter().map(|s| ("made".to_owned(), s)));
    assert!(inputs.len() >= 7, "the seeds are made");
    for (name, input) in &inputs {
        for target in Target::ALL {
            if let Err(panic) = target.run(input) {
                panic!("{} panicked on {name}: {panic}", target.name());
            }
        }
    }
    // The made seeds decode: the targets reach the decoders.
    assert!(made_seeds().iter().any(|s| Target::Jpeg.run(s) == Ok(true)), "a made JPEG decodes");
    assert!(made_seeds().iter().all(|s| Target::Upload.run(s) == Ok(true)), "every made seed passes the upload check");
}

#[test]
fn a_short_deterministic_run_finds_nothing() {
    let seeds = made_seeds();
    let mut rng = Rng::new(7);
    for n in 0..400 {
        let mut input = seeds[n % seeds.len()].clone();
        mutate(&mut input, &seeds[rng.below(seeds.len())], &mut rng);
        for target in Target::ALL {
            assert!(target.run(&input).is_ok(), "{} panicked on mutation {n}", target.name());
        }
    }
}
