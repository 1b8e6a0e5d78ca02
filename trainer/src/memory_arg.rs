//! Memory sizes on the command line (`--gpu-memory 80GiB`, `--cpu-memory 64GiB`), as
//! `plan` and `train` take them.

use anneal_crds::memory_plan::ByteSize;

/// A memory size with its unit: a bare `80` would be 80 bytes, never what was meant.
pub fn memory_size(text: &str) -> Result<ByteSize, String> {
    if text.trim().chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!("{text}: give the unit, e.g. {text}GiB"));
    }
    text.parse::<ByteSize>().map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_size_needs_its_unit() {
        assert_eq!(memory_size("80GiB"), Ok(ByteSize::gib(80)));
        assert_eq!(
            memory_size("80").unwrap_err(),
            "80: give the unit, e.g. 80GiB"
        );
    }
}
