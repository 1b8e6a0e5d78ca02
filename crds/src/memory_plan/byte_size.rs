//! Byte counts as people write them (`80GiB`, `141 GiB`, `80GB`, `64Gi`) and as the
//! memory plan prints them (`14.2 GiB`).

use std::fmt;
use std::str::FromStr;

/// One gibibyte, the unit GPU memory is sold and printed in.
pub const GIB: u64 = 1 << 30;
pub const MIB: u64 = 1 << 20;

/// A number of bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// `n` gibibytes.
    pub const fn gib(n: u64) -> Self {
        ByteSize(n * GIB)
    }

    pub const fn bytes(self) -> u64 {
        self.0
    }

    /// The size in GiB, for tables.
    pub fn as_gib(self) -> f64 {
        self.0 as f64 / GIB as f64
    }
}

/// Why a text is not a byte size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a memory size ({reason}); write it like 80GiB, 141GiB or 80GB")]
pub struct ByteSizeError {
    pub text: String,
    pub reason: &'static str,
}

/// Units by their lowercase spelling: binary (`GiB`, and Kubernetes' `Gi`) and decimal
/// (`GB`, and Kubernetes' `G`); a bare number is bytes.
const UNITS: [(&str, u64); 18] = [
    ("", 1),
    ("b", 1),
    ("kib", 1 << 10),
    ("ki", 1 << 10),
    ("mib", 1 << 20),
    ("mi", 1 << 20),
    ("gib", 1 << 30),
    ("gi", 1 << 30),
    ("tib", 1 << 40),
    ("ti", 1 << 40),
    ("kb", 1_000),
    ("k", 1_000),
    ("mb", 1_000_000),
    ("m", 1_000_000),
    ("gb", 1_000_000_000),
    ("g", 1_000_000_000),
    ("tb", 1_000_000_000_000),
    ("t", 1_000_000_000_000),
];

impl FromStr for ByteSize {
    type Err = ByteSizeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = |reason| ByteSizeError {
            text: text.to_owned(),
            reason,
        };
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(split);
        let number: f64 = number.parse().map_err(|_| error("no number"))?;
        let unit = unit.trim().to_ascii_lowercase();
        let scale = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, scale)| *scale)
            .ok_or_else(|| error("unknown unit"))?;
        let bytes = (number * scale as f64).round();
        if !bytes.is_finite() || bytes >= u64::MAX as f64 {
            return Err(error("too large"));
        }
        if bytes < 1.0 {
            return Err(error("must be more than 0"));
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl fmt::Display for ByteSize {
    /// Whole GiB without decimals (`80 GiB`), else one decimal in the largest unit
    /// that keeps the number at least 1 (`14.2 GiB`, `3.5 MiB`, `12 B`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0;
        if bytes >= GIB && bytes.is_multiple_of(GIB) {
            return write!(f, "{} GiB", bytes / GIB);
        }
        for (unit, scale) in [
            ("TiB", 1u64 << 40),
            ("GiB", GIB),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ] {
            if bytes >= scale {
                return write!(f, "{:.1} {unit}", bytes as f64 / scale as f64);
            }
        }
        write!(f, "{bytes} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_and_decimal_units() {
        let cases = [
            ("80GiB", 80 * GIB),
            ("141GiB", 141 * GIB),
            ("141 GiB", 141 * GIB),
            ("64Gi", 64 * GIB),
            ("80gib", 80 * GIB),
            ("80GB", 80_000_000_000),
            ("1.5GiB", 3 * GIB / 2),
            ("512MiB", 512 << 20),
            ("1024", 1024),
        ];
        for (text, bytes) in cases {
            assert_eq!(text.parse::<ByteSize>(), Ok(ByteSize(bytes)), "{text}");
        }
    }

    #[test]
    fn bad_sizes_say_why() {
        for (text, reason) in [
            ("GiB", "no number"),
            ("80 parsecs", "unknown unit"),
            ("0GiB", "must be more than 0"),
            ("", "no number"),
        ] {
            let error = text.parse::<ByteSize>().unwrap_err();
            assert_eq!(error.reason, reason, "{text}");
        }
        assert_eq!(
            "80 parsecs".parse::<ByteSize>().unwrap_err().to_string(),
            "\"80 parsecs\" is not a memory size (unknown unit); write it like 80GiB, 141GiB or 80GB"
        );
    }

    #[test]
    fn sizes_print_whole_gib_plainly_and_the_rest_with_one_decimal() {
        assert_eq!(ByteSize::gib(80).to_string(), "80 GiB");
        assert_eq!(ByteSize(15_231_233_024).to_string(), "14.2 GiB");
        assert_eq!(ByteSize(3 << 19).to_string(), "1.5 MiB");
        assert_eq!(ByteSize(12).to_string(), "12 B");
    }
}
