//! The `client` feature as a client application builds it, and the
//! README's copies of the recipes.

use super::*;

/// `--no-default-features --features client` leaves the service's heavy
/// dependencies out of the build.
#[test]
fn the_client_feature_builds_without_the_service_dependencies() {
    let out = std::process::Command::new(env!("CARGO"))
        .current_dir(root())
        .args([
            "tree",
            "--locked",
            "--offline",
            "--no-default-features",
            "--features",
            "client",
            "--edges",
            "normal",
            "--prefix",
            "none",
        ])
        .output()
        .expect("cargo tree");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        crates.contains(&"async-nats") && crates.contains(&"reqwest"),
        "{tree}"
    );
    for heavy in [
        "aws-lc-rs",
        "aws-lc-sys",
        "jsonwebtoken",
        "chrono",
        "clap",
        "tracing-subscriber",
        "toml",
        "crypto_box",
        "openidconnect",
    ] {
        assert!(
            !crates.contains(&heavy),
            "{heavy} in the client build:\n{tree}"
        );
    }
}

/// The README's snippet of each recipe is the tested file's, line for line.
#[test]
fn readme_shows_each_recipe_as_tested() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for file in [
        "rust/main.rs",
        "go/main.go",
        "python/recipe.py",
        "js/recipe.mjs",
        "java/src/main/java/example/Recipe.java",
        "cli/recipe.sh",
    ] {
        let text = std::fs::read_to_string(examples().join(file)).unwrap();
        let mut lines = text.lines();
        let mut snippets = 0;
        while lines.any(|l| l.contains("snippet:start")) {
            let snippet: Vec<&str> = lines
                .by_ref()
                .take_while(|l| !l.contains("snippet:end"))
                .collect();
            let indent = snippet
                .iter()
                .filter(|l| !l.trim().is_empty())
                .map(|l| l.len() - l.trim_start().len())
                .min()
                .unwrap_or(0);
            let block = snippet
                .iter()
                .map(|l| l.get(indent..).unwrap_or("").trim_end())
                .collect::<Vec<_>>()
                .join("\n");
            assert!(
                readme.contains(&block),
                "README lacks a snippet of examples/clients/{file}:\n{block}"
            );
            snippets += 1;
        }
        assert!(snippets > 0, "{file} marks no snippet");
    }
    let policy = std::fs::read_to_string(examples().join("policy.toml")).unwrap();
    assert!(
        readme.contains(policy.trim_end()),
        "README lacks examples/clients/policy.toml"
    );
}
