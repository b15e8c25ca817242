//! Bundles the campaign files into the binary, so a Lambda package carries exactly the content it
//! was built and validated with. The local stack can read a folder on disk instead (`--campaigns`).

use std::fmt::Write;
use std::path::{Path, PathBuf};

/// Content folders; everything in them is bundled. `settings.toml` and `scoring.toml` sit at the top.
const FOLDERS: [&str; 4] = ["forms", "templates", "journeys", "bots"];
const TOP_FILES: [&str; 2] = ["settings.toml", "scoring.toml"];

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let mut files: Vec<PathBuf> = TOP_FILES.iter().map(|name| root.join(name)).filter(|path| path.exists()).collect();
    for folder in FOLDERS {
        let dir = root.join(folder);
        println!("cargo:rerun-if-changed={}", dir.display());
        collect(&dir, &mut files);
    }
    for name in TOP_FILES {
        println!("cargo:rerun-if-changed={}", root.join(name).display());
    }
    files.sort();
    let mut code = String::from(
        "/// Every campaign file: (path relative to the campaigns folder, text).\npub static FILES: &[(&str, &str)] = &[\n",
    );
    for file in files {
        let relative = file.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/");
        println!("cargo:rerun-if-changed={}", file.display());
        writeln!(code, "    ({relative:?}, include_str!({:?})),", file.display().to_string()).unwrap();
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("bundled.rs");
    std::fs::write(out, code).unwrap();
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect(&path, files);
        } else {
            files.push(path);
        }
    }
}
