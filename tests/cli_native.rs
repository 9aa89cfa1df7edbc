//! The `easel generate` command as a user runs it: prompts in any script come back exactly
//! from the PNG, and every bad input gets its own sentence (asserted word for word).

#![cfg(not(target_arch = "wasm32"))]

use std::path::{Path, PathBuf};
use std::process::Command;

use easel::pipelines::Rgba;

const MODEL: &str = "www/models/sd-tiny";

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("easel-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Runs `easel generate` on the bundled model with `args` (2 steps on the CPU unless they
/// say otherwise); (ok, stderr).
fn generate(args: &[&str]) -> (bool, String) {
    let out = tmp(&format!("out-{}.png", args.join("_").chars().filter(|c| c.is_ascii_alphanumeric()).take(60).collect::<String>()));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_easel"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args(["generate", "--model", MODEL, "--out"]).arg(&out).args(args);
    // Defaults for what the case does not set itself.
    for (flag, value) in [("--steps", "2"), ("--backend", "cpu")] {
        if !args.iter().any(|a| a.split('=').next() == Some(flag)) {
            cmd.args([flag, value]);
        }
    }
    let o = cmd.output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// The error line of a failed run (clap adds a "try --help" line after its own).
fn error_of(args: &[&str]) -> String {
    let (ok, stderr) = generate(args);
    assert!(!ok, "{args:?} should fail; stderr:\n{stderr}");
    stderr.lines().rfind(|l| l.starts_with("error:")).unwrap_or_default().to_string()
}

fn text(png: &Path) -> Vec<(String, String)> {
    Rgba::png_text(&std::fs::read(png).unwrap()).unwrap()
}

fn get(text: &[(String, String)], key: &str) -> String {
    text.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_else(|| panic!("no '{key}' in {text:?}"))
}

#[test]
fn prompts_in_any_script_generate_and_read_back_exactly() {
    let cases = [("一只戴墨镜的柴犬 😎", "模糊, 低质量"), ("👨\u{200d}👩\u{200d}👧 family, ❤️", ""), ("שלום עולם, مرحبا", "e\u{301}\u{200b}")];
    for (i, (prompt, negative)) in cases.iter().enumerate() {
        let out = tmp(&format!("unicode-{i}.png"));
        let o = Command::new(env!("CARGO_BIN_EXE_easel"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["generate", "--model", MODEL, "--steps", "2", "--seed", "7", "--backend", "cpu", "--prompt", prompt, "--negative-prompt", negative, "--out"])
            .arg(&out)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{prompt}: {stderr}");
        let t = text(&out);
        assert_eq!(get(&t, "prompt"), *prompt);
        assert_eq!(get(&t, "negative_prompt"), *negative);
        let neg = if negative.is_empty() { String::new() } else { format!("\nNegative prompt: {negative}") };
        let want = format!("{prompt}{neg}\nSteps: 2, Sampler: Euler, CFG scale: 7.5, Seed: 7, Size: 16x16, Model: sd2-tiny, Version: easel {}", easel::VERSION);
        assert_eq!(get(&t, "parameters"), want);
        let img = Rgba::from_png(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!((img.width, img.height), (16, 16));
    }
}

#[test]
fn nothing_says_error_when_nothing_is_wrong() {
    // Without XDG_RUNTIME_DIR Mesa's Vulkan drivers print "error: XDG_RUNTIME_DIR is invalid"
    // at every device open; auto opens the GPU to choose a backend.
    let out = tmp("quiet.png");
    let o = Command::new(env!("CARGO_BIN_EXE_easel"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("XDG_RUNTIME_DIR")
        .args(["generate", "--model", MODEL, "--steps", "1", "--prompt", "a fox", "--backend", "auto", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(!stderr.to_lowercase().contains("error"), "a clean run printed an error:\n{stderr}");
}

/// The decode's line says its cost in UNet steps and the time that makes at the last
/// step's pace ("decoding (about 0 s: 0.9 steps' work)" for the tiny model).
#[test]
fn the_decode_says_about_how_long_it_takes() {
    let (ok, stderr) = generate(&["--prompt", "a fox"]);
    assert!(ok, "{stderr}");
    let line = stderr.lines().find(|l| l.starts_with("decoding")).unwrap_or_else(|| panic!("no decoding line:\n{stderr}"));
    let work: f64 = line.split(": ").nth(1).and_then(|w| w.strip_suffix(" steps' work)")).and_then(|w| w.parse().ok()).unwrap_or_else(|| panic!("{line}"));
    assert!(line.starts_with("decoding (about ") && work > 0.0, "{line}");
}

#[test]
fn bad_requests_are_refused_with_a_sentence() {
    let p = ["--prompt", "a fox"];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--steps", "0"], "error: request: steps = 0 must be between 1 and 1000"),
        (vec!["--steps", "10000"], "error: request: steps = 10000 must be between 1 and 1000"),
        (vec!["--width", "0"], "error: request: size 0x16 must be positive multiples of 8"),
        (vec!["--width", "12", "--height", "20"], "error: request: size 12x20 must be positive multiples of 8"),
        (vec!["--guidance", "-1"], "error: request: guidance = -1 must be a number >= 0"),
        (vec!["--guidance", "NaN"], "error: request: guidance = NaN must be a number >= 0"),
        (vec!["--batch", "0"], "error: request: batch = 0 must be between 1 and 16"),
        (vec!["--batch", "1000"], "error: request: batch = 1000 must be between 1 and 16"),
        (vec!["--width", "-8"], "error: invalid value '-8' for '--width <WIDTH>': invalid digit found in string"),
        (vec!["--seed", "-1"], "error: invalid value '-1' for '--seed <SEED>': invalid digit found in string"),
        (vec!["--seed", "18446744073709551616"], "error: invalid value '18446744073709551616' for '--seed <SEED>': number too large to fit in target type"),
        (vec!["--seed", "1.5"], "error: invalid value '1.5' for '--seed <SEED>': invalid digit found in string"),
        (vec!["--scheduler", "heun"], "error: Unknown scheduler 'heun'; choose one of: euler, euler_a, ddim, dpmpp_2m, dpmpp_2m_karras, pndm, lcm, ddpm."),
    ];
    for (args, want) in cases {
        let all: Vec<&str> = p.iter().copied().chain(args.iter().copied()).collect();
        assert_eq!(error_of(&all), want, "{args:?}");
    }
}

#[test]
fn a_size_that_cannot_fit_is_refused_before_any_step() {
    // The bundled model downsamples by 2: at 32768x32768 the UNet's feed-forward alone holds
    // 268M tokens x 128 channels x 4 B x CFG 2 = 256 GiB.
    let (ok, stderr) = generate(&["--prompt", "a fox", "--width", "32768", "--height", "32768"]);
    assert!(!ok);
    assert!(!stderr.contains("step 1/"), "refused before the first step:\n{stderr}");
    let last = stderr.lines().last().unwrap();
    let head = "error: too large: 32768x32768 needs 256.0 GiB for the UNet's feed-forward activations (268435456 tokens x 128), but the memory available is ";
    assert!(last.starts_with(head) && last.contains(" GiB: the largest square size that fits is "), "{last}");
    // With candle's whole-scores attention (EASEL_CPU_ATTENTION=candle) 512x512 is 65,536
    // tokens of self-attention whose scores are 2 heads x CFG 2 x 65536^2 x 4 B = 64 GiB: the
    // check counts them. (The default attention works in blocks of rows and needs none.)
    let out = tmp("candle-attention.png");
    let o = Command::new(env!("CARGO_BIN_EXE_easel"))
        .env("EASEL_CPU_ATTENTION", "candle")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["generate", "--model", MODEL, "--prompt", "a fox", "--width", "512", "--height", "512", "--steps", "2", "--backend", "cpu", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    let last = stderr.lines().last().unwrap();
    let head = "error: too large: 512x512 needs 64.0 GiB for the UNet's self-attention scores (65536 tokens, 2 heads), but the memory available is ";
    assert!(!o.status.success() && last.starts_with(head) && last.contains(" GiB: the largest square size that fits is "), "{last}");
}

/// Writes a PNG of any colour type and depth.
fn write_png(path: &Path, w: u32, h: u32, color: png::ColorType, depth: png::BitDepth, data: &[u8], palette: Option<Vec<u8>>) {
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, w, h);
        enc.set_color(color);
        enc.set_depth(depth);
        if let Some(p) = palette {
            enc.set_palette(p);
        }
        enc.write_header().unwrap().write_image_data(data).unwrap();
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn init_images_of_every_png_kind_and_size_are_taken() {
    use png::{BitDepth, ColorType};
    let gray16 = tmp("gray16.png");
    write_png(&gray16, 40, 24, ColorType::Grayscale, BitDepth::Sixteen, &vec![0x80; 40 * 24 * 2], None);
    let palette = tmp("palette.png");
    write_png(&palette, 16, 16, ColorType::Indexed, BitDepth::Eight, &[1; 256], Some(vec![0, 0, 0, 200, 30, 10]));
    let alpha = tmp("alpha.png");
    write_png(&alpha, 16, 16, ColorType::Rgba, BitDepth::Eight, &[90; 16 * 16 * 4], None);
    let gray_alpha = tmp("gray-alpha.png");
    write_png(&gray_alpha, 16, 16, ColorType::GrayscaleAlpha, BitDepth::Eight, &[60; 16 * 16 * 2], None);
    for file in [&palette, &alpha, &gray_alpha] {
        let (ok, stderr) = generate(&["--prompt", "a fox", "--init-image", file.to_str().unwrap(), "--strength", "0.5"]);
        assert!(ok, "{}: {stderr}", file.display());
    }
    // Another size than asked for: resized, and the CLI says so.
    let (ok, stderr) = generate(&["--prompt", "a fox", "--init-image", gray16.to_str().unwrap(), "--width", "16", "--height", "16"]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("note: the init image (40x24) was resized to 16x16"), "{stderr}");
    // No size given: the image's own.
    let out = tmp("out-own-size.png");
    let o = Command::new(env!("CARGO_BIN_EXE_easel"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["generate", "--model", MODEL, "--steps", "2", "--backend", "cpu", "--prompt", "x", "--init-image", gray16.to_str().unwrap(), "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success());
    let img = Rgba::from_png(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!((img.width, img.height), (40, 24));
}

#[test]
fn unreadable_images_and_masks_are_named() {
    let good = tmp("good.png");
    write_png(&good, 16, 16, png::ColorType::Rgb, png::BitDepth::Eight, &[128; 16 * 16 * 3], None);
    let bytes = std::fs::read(&good).unwrap();
    let truncated = tmp("truncated.png");
    std::fs::write(&truncated, &bytes[..bytes.len() - 20]).unwrap();
    let jpeg = tmp("photo.jpg");
    std::fs::write(&jpeg, [0xff, 0xd8, 0xff, 0xe0, 0, 16, b'J', b'F', b'I', b'F']).unwrap();
    let webp = tmp("photo.webp");
    std::fs::write(&webp, b"RIFF\x10\0\0\0WEBPVP8 ").unwrap();
    let text = tmp("notes.txt");
    std::fs::write(&text, "hello").unwrap();
    let black = tmp("black.png");
    write_png(&black, 16, 16, png::ColorType::Grayscale, png::BitDepth::Eight, &[0; 256], None);
    let white = tmp("white.png");
    write_png(&white, 16, 16, png::ColorType::Grayscale, png::BitDepth::Eight, &[255; 256], None);
    let img = |f: &Path| ["--prompt", "a fox", "--init-image", f.to_str().unwrap()].map(String::from).to_vec();
    let cases = [
        (img(&truncated), format!("error: request: {}: the PNG's pixel data is truncated or corrupt (", truncated.display())),
        (img(&jpeg), format!("error: request: {}: this is a JPEG image; the CLI reads PNG (convert it with any image tool) or safetensors", jpeg.display())),
        (img(&webp), format!("error: request: {}: this is a WebP image; the CLI reads PNG (convert it with any image tool) or safetensors", webp.display())),
        (img(&text), format!("error: request: {}: neither a PNG nor a readable safetensors file (", text.display())),
        (
            [img(&good), vec!["--mask".into(), black.to_str().unwrap().into()]].concat(),
            "error: request: the mask is all black, so nothing would be repainted: paint white where the image should change".to_string(),
        ),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let got = error_of(&args);
        assert!(got.starts_with(&want), "{args:?}:\n got  {got}\n want {want}");
    }
    // An all-white mask repaints everything: allowed.
    let (ok, stderr) = generate(&["--prompt", "a fox", "--init-image", good.to_str().unwrap(), "--mask", white.to_str().unwrap()]);
    assert!(ok, "{stderr}");
}

/// `--style` adds the page's style words (www/styles.txt) to the prompts, and the PNG records
/// the final text; `--styles FILE` takes your own list; an unknown style names the others.
#[test]
fn a_style_adds_its_words_and_the_png_records_the_final_prompt() {
    let out = tmp("style.png");
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_easel"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["generate", "--model", MODEL, "--steps", "1", "--backend", "cpu", "--prompt", "一只狐狸 🦊", "--out"])
            .arg(&out)
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run(&["--style", "watercolor"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let t = text(&out);
    assert_eq!(get(&t, "prompt"), "一只狐狸 🦊, watercolor painting, soft washes");
    assert_eq!(get(&t, "negative_prompt"), "photo, harsh lines");
    let list = tmp("styles.txt");
    std::fs::write(&list, "Ink | 水墨画 | colour\n").unwrap();
    let o = run(&["--style", "ink", "--styles", list.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(get(&text(&out), "prompt"), "一只狐狸 🦊, 水墨画");
    let o = run(&["--style", "cubism"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("no style called 'cubism': the styles are Twemoji, Noto, Watercolor, Oil painting, Pixel art, Line drawing"), "{err}");
}
