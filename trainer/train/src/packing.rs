//! Sequence packing (`dataset.packing`) of a step's chats into rows of at most
//! `maxTokens` input positions. The step keeps its samples and its loss (the mean
//! over its trained tokens): packing changes only how many rows carry them, so a
//! micro-batch is then a number of rows, the memory plan's unit (one row of
//! `maxTokens` positions) either way, and fewer, fuller rows run where many short
//! ones did.

use crate::tokenized::DataItem;

/// The samples of `batch` (indices into `samples`) in rows of at most `capacity`
/// input positions (a sample of `n` tokens reads `n - 1`), as few rows as it takes and
/// as evenly filled: the rows of a batch are padded to its longest, so an even fill
/// is what saves the padding. Longest first, each sample to the emptiest row (LPT);
/// when it does not fit there, one row more and again. Rows list their samples in the
/// order placed.
pub fn pack_rows<T: DataItem>(samples: &[T], batch: &[usize], capacity: usize) -> Vec<Vec<usize>> {
    let positions = |i: usize| samples[i].tokens().saturating_sub(1);
    let mut longest_first = batch.to_vec();
    longest_first.sort_by_key(|&i| std::cmp::Reverse(positions(i)));
    let total: usize = batch.iter().map(|&i| positions(i)).sum();
    let mut count = total.div_ceil(capacity.max(1)).max(1);
    loop {
        if let Some(rows) = fill_rows(&longest_first, count, capacity, positions) {
            return rows.into_iter().filter(|row| !row.is_empty()).collect();
        }
        count += 1;
    }
}

/// `order` into `count` rows, each sample to the row with the fewest positions so far;
/// `None` when a sample does not fit there.
fn fill_rows(
    order: &[usize],
    count: usize,
    capacity: usize,
    positions: impl Fn(usize) -> usize,
) -> Option<Vec<Vec<usize>>> {
    let mut rows: Vec<(usize, Vec<usize>)> = vec![(0, Vec::new()); count];
    for &sample in order {
        let need = positions(sample);
        let (used, row) = rows.iter_mut().min_by_key(|(used, _)| *used)?;
        if *used + need > capacity && !row.is_empty() {
            return None;
        }
        *used += need;
        row.push(sample);
    }
    Some(rows.into_iter().map(|(_, row)| row).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenized::TokenizedSample;

    #[test]
    fn rows_hold_every_sample_once_within_the_capacity_and_few_rows() {
        // Lengths in tokens; positions are one fewer.
        let lengths = [101, 31, 61, 11, 91, 41, 21, 71, 51, 81];
        let samples: Vec<_> = (lengths.iter().enumerate())
            .map(|(i, &n)| TokenizedSample::of_len(i as u64, n))
            .collect();
        let batch: Vec<usize> = (0..samples.len()).collect();
        let rows = pack_rows(&samples, &batch, 160);
        let mut seen: Vec<usize> = rows.concat();
        seen.sort();
        assert_eq!(seen, batch);
        let used: Vec<usize> = (rows.iter())
            .map(|row| row.iter().map(|&i| lengths[i] - 1).sum())
            .collect();
        assert!(used.iter().all(|&u| u <= 160), "{used:?}");
        // 540 positions in rows of 160: 4 rows is the least there can be, and they are
        // filled evenly (the batch pads to its longest row): first fit would fill
        // 160 + 160 + 150 + 70.
        assert_eq!(rows.len(), 4, "{rows:?}");
        assert_eq!(used, [150, 140, 130, 130]);
        // A sample as long as a row gets one to itself.
        assert_eq!(pack_rows(&samples, &[0, 3], 100), [vec![0], vec![3]]);
    }
}
