use std::collections::BTreeMap;
use std::io::Cursor;

use image::{ImageFormat, RgbImage};

use super::*;

/// An encoded `width` x `height` image.
fn encoded(format: ImageFormat, width: u32, height: u32) -> Vec<u8> {
    let image = RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 128]));
    let mut bytes = Cursor::new(Vec::new());
    image.write_to(&mut bytes, format).unwrap();
    bytes.into_inner()
}

/// A folder in memory: file name to bytes.
struct Folder(BTreeMap<String, Vec<u8>>);

impl Folder {
    fn new(files: &[(&str, Vec<u8>)]) -> Self {
        Self(
            files
                .iter()
                .map(|(name, bytes)| (name.to_string(), bytes.clone()))
                .collect(),
        )
    }

    fn check(&self, fallback: &CaptionFallback, limits: &ImageFolderLimits) -> ImageFolderReport {
        validate_image_folder(&self.listing(), fallback, limits, &mut |name| {
            self.0.get(name).cloned().ok_or_else(|| "gone".to_owned())
        })
    }

    /// The operator's check: headers only.
    fn check_headers(
        &self,
        fallback: &CaptionFallback,
        limits: &ImageFolderLimits,
    ) -> ImageFolderReport {
        check_image_headers(&self.listing(), fallback, limits, &mut |name| {
            self.0.get(name).cloned().ok_or_else(|| "gone".to_owned())
        })
    }

    fn listing(&self) -> Vec<FolderFile> {
        self.0
            .iter()
            .map(|(name, bytes)| FolderFile {
                name: name.clone(),
                size: bytes.len() as u64,
            })
            .collect()
    }
}

fn png(width: u32, height: u32) -> Vec<u8> {
    encoded(ImageFormat::Png, width, height)
}

fn text(caption: &str) -> Vec<u8> {
    caption.as_bytes().to_vec()
}

fn trigger() -> CaptionFallback {
    CaptionFallback::TriggerWord("sks dog".to_owned())
}

#[test]
fn a_good_folder_pairs_each_image_with_its_caption() {
    let folder = Folder::new(&[
        ("dog1.png", png(40, 30)),
        ("dog1.txt", text("  a dog on grass\n")),
        ("dog2.JPG", encoded(ImageFormat::Jpeg, 24, 32)),
        ("dog2.txt", text("a dog asleep")),
        ("dog3.webp", encoded(ImageFormat::WebP, 16, 16)),
        (".DS_Store", vec![0; 3]),
        ("notes.md", text("hi")),
        ("old/dog9.png", png(8, 8)),
        ("cat.txt", text("a cat")),
    ]);
    let report = folder.check(&trigger(), &ImageFolderLimits::default());
    assert!(report.is_valid(), "{report}");
    let found: Vec<(&str, Option<&str>, u32, u32)> = report
        .images
        .iter()
        .map(|i| (i.name.as_str(), i.caption.as_deref(), i.width, i.height))
        .collect();
    assert_eq!(
        found,
        vec![
            ("dog1.png", Some("a dog on grass"), 40, 30),
            ("dog2.JPG", Some("a dog asleep"), 24, 32),
            ("dog3.webp", None, 16, 16),
        ]
    );
    assert_eq!(
        report.notes,
        vec![
            "left out (not an image or a caption): .DS_Store, notes.md",
            "left out (in a subfolder): old/dog9.png",
            "left out (a caption without an image): cat.txt",
            "1 image(s) without a caption are trained on the trigger word \"sks dog\" alone: dog3.webp",
        ]
    );
}

#[test]
fn each_bad_folder_is_refused_naming_the_file() {
    let small = ImageFolderLimits {
        max_images: 2,
        max_total_bytes: 400,
        max_image_bytes: 300,
        max_caption_bytes: 10,
    };
    let mut truncated = png(32, 32);
    truncated.truncate(truncated.len() / 2);
    let defaults = ImageFolderLimits::default();
    let cases: Vec<(Folder, CaptionFallback, ImageFolderLimits, Vec<&str>)> = vec![
        (
            Folder::new(&[("a.txt", text("x"))]),
            trigger(),
            defaults,
            vec!["the folder holds no images (.jpg, .jpeg, .png or .webp at its top level)"],
        ),
        (
            Folder::new(&[
                ("a.png", png(4, 4)),
                ("b.png", png(4, 4)),
                ("c.png", png(4, 4)),
            ]),
            trigger(),
            small,
            vec!["the folder holds 3 images; at most 2 are allowed"],
        ),
        (
            Folder::new(&[("big.png", vec![0; 301]), ("big.txt", text("0123456789AB"))]),
            trigger(),
            small,
            vec![
                "big.png: 301 bytes; an image may have at most 300",
                "big.txt: 12 bytes; a caption may have at most 10",
            ],
        ),
        (
            Folder::new(&[("a.png", vec![0; 250]), ("b.png", vec![0; 250])]),
            trigger(),
            small,
            vec!["the folder holds 500 bytes of images and captions; at most 400 are allowed"],
        ),
        (
            Folder::new(&[("dog.png", png(4, 4)), ("dog.jpg", png(4, 4))]),
            trigger(),
            defaults,
            vec!["dog.jpg: dog.jpg, dog.png share one name, so one caption: rename all but one"],
        ),
        (
            Folder::new(&[("cut.png", truncated)]),
            trigger(),
            defaults,
            vec!["cut.png: cannot be decoded as a PNG image"],
        ),
        (
            Folder::new(&[("fake.jpg", text("hello, I am not a picture"))]),
            trigger(),
            defaults,
            vec!["fake.jpg: is not a JPEG, PNG or WebP image"],
        ),
        (
            Folder::new(&[
                ("a.gif", vec![]),
                ("b.png", b"GIF89a\x01\x00\x01\x00".to_vec()),
            ]),
            trigger(),
            defaults,
            vec!["b.png: is a gif image; only JPEG, PNG and WebP are read"],
        ),
        (
            Folder::new(&[("a.png", png(4, 4)), ("a.txt", vec![b'o', b'k', 0xff])]),
            trigger(),
            defaults,
            vec!["a.txt: is not UTF-8 text (byte 3 is not valid)"],
        ),
        (
            Folder::new(&[
                ("a.png", png(4, 4)),
                ("b.png", png(4, 4)),
                ("b.txt", text("  ")),
            ]),
            CaptionFallback::None,
            defaults,
            vec![
                "a.png: has no caption (a .txt file of the same name) and the job sets no hyperparameters.triggerWord to train it on",
                "b.png: has no caption (a .txt file of the same name) and the job sets no hyperparameters.triggerWord to train it on",
            ],
        ),
    ];
    for (folder, fallback, limits, expected) in cases {
        let report = folder.check(&fallback, &limits);
        let found: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        // The operator's header check refuses the same folders with the same messages,
        // but for pixel data damaged after a whole header, which only decoding finds.
        let headers = folder.check_headers(&fallback, &limits);
        let header_problems: Vec<String> =
            headers.problems.iter().map(ToString::to_string).collect();
        if folder.0.contains_key("cut.png") {
            assert!(headers.is_valid(), "{header_problems:?}");
        } else {
            assert_eq!(header_problems, found);
        }
        assert!(!report.is_valid(), "{:?}", folder.0.keys());
        for want in &expected {
            assert!(
                found.iter().any(|f| f.starts_with(want)),
                "{:?}: expected {want:?} in {found:#?}",
                folder.0.keys()
            );
        }
    }
}

#[test]
fn an_image_claiming_a_huge_size_is_refused_without_allocating_it() {
    // A valid PNG header declaring 100,000 x 100,000 pixels: 40 GB if decoded.
    let mut bytes = png(1, 1);
    // IHDR's width and height follow the 8-byte signature, the chunk length and type.
    bytes[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bytes[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    // The chunk's CRC covers its type and data (bytes 12..29), so the header stays valid.
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    let problem = decode_image(&bytes).unwrap_err();
    assert!(
        problem.starts_with("cannot be decoded as a PNG image"),
        "{problem}"
    );
    assert_eq!(
        image_header(&bytes).unwrap_err(),
        "cannot be decoded as a PNG image: 100000x100000 is larger than 8192 pixels a side"
    );
    assert_eq!(image_header(&png(40, 30)), Ok((40, 30)));
}

#[test]
fn without_a_job_an_uncaptioned_image_is_a_note() {
    let folder = Folder::new(&[("a.png", png(4, 4))]);
    let report = folder.check(&CaptionFallback::Unknown, &ImageFolderLimits::default());
    assert!(report.is_valid());
    assert_eq!(
        report.notes,
        vec!["1 image(s) without a caption need the job's hyperparameters.triggerWord: a.png"]
    );
    assert_eq!(
        report.to_string(),
        "1 images, 0 with a caption\nnote: 1 image(s) without a caption need the job's hyperparameters.triggerWord: a.png\nvalid\n"
    );
}

/// CRC-32 as PNG chunks use it (ISO 3309).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
