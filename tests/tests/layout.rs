//! The shape the code keeps: data flows from sources through the rule set to the datapath,
//! the daemon runs it, and the command line sits on top; nothing below `cli/` reaches up.

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("source directory") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_library_never_imports_the_command_line() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../intune-ctl/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let library: Vec<_> = files
        .iter()
        .filter(|p| !p.starts_with(src.join("cli")) && !p.ends_with("main.rs"))
        .collect();
    assert!(
        library.len() > 40,
        "found the library's files: {}",
        library.len()
    );
    let mut offenders = Vec::new();
    for path in library {
        let text = std::fs::read_to_string(path).expect("read");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains("crate::cli") || code.contains("super::cli") {
                offenders.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(offenders.is_empty(), "{offenders:#?}");
}
